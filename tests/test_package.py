"""Package-level contracts: a light import and one direction of imports between the layers."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT

FORBIDDEN = {
    "dira_zoo": {"training", "apps", "gradio"},
    "training": {"apps", "gradio"},
    "apps": {"training"},
}


def _imported_roots(path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_in_one_direction(package: str) -> None:
    files = sorted((REPO_ROOT / package).rglob("*.py"))
    assert files, f"no sources found for {package}"
    offenders = {
        str(f.relative_to(REPO_ROOT)): sorted(_imported_roots(f) & FORBIDDEN[package]) for f in files
    }
    assert not {f: bad for f, bad in offenders.items() if bad}


def test_import_is_light() -> None:
    code = (
        "import sys, dira_zoo; "
        "heavy = [m for m in ('torch', 'timm', 'gradio', 'pytorch_grad_cam', 'cv2', 'training', 'apps') "
        "if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_attributes_resolve() -> None:
    import dira_zoo

    assert callable(dira_zoo.list_models)
    assert "dira_moco_chestxray14" in dira_zoo.list_models()
    with pytest.raises(AttributeError):
        _ = dira_zoo.no_such_name
