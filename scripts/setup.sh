#!/usr/bin/env bash
# Set up dira-zoo in ./.venv with no hand steps.
#   bash scripts/setup.sh        the package and its CLIs (dira-zoo, dira-localize, dira-demo needs "demo")
#   bash scripts/setup.sh dev    + test tools, gradio and the headless Chromium used by the demo's browser test
# torch/torchvision are plain ranges in pyproject.toml: pip picks a matching pair (on the project's build
# machines the capped local wheels, torch 2.14.1 + torchvision 0.29.1), so no workaround code is needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extras=${1:-}
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  python=$(command -v python3.11 || command -v python3)
fi

if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi

spec="."
[[ -n "$extras" ]] && spec=".[${extras}]"
log=.venv/pip-install.log
if ! .venv/bin/python -m pip install --disable-pip-version-check -e "$spec" >"$log" 2>&1; then
  grep -v "^WARNING: Location" "$log" >&2
  echo "setup: pip install failed (log: $log)" >&2
  exit 1
fi

if [[ "$extras" == *dev* && -f scripts/install_browser.sh ]]; then
  bash scripts/install_browser.sh
fi
echo "setup: ready (.venv, extras: ${extras:-none})"
