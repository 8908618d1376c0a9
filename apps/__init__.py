"""Applications built on :mod:`dira_zoo`: the Gradio demo (``dira-demo``). Only ``apps`` imports gradio."""
