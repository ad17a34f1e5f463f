"""Imports go one way: pipelines -> components -> contrastive. The library never imports kfp,
and the model code imports without TensorFlow."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"contrastive": 0, "components": 1, "pipelines": 2}
MODEL_MODULES = ["losses", "augment", "models", "training", "config", "evaluation"]


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _sources():
    for package, folder in (
        ("contrastive", ROOT / "src" / "contrastive"),
        ("components", ROOT / "components"),
        ("pipelines", ROOT / "pipelines"),
    ):
        for path in folder.rglob("*.py"):
            yield package, path


def test_imports_only_point_downwards():
    violations = []
    for package, path in _sources():
        for name in _imported_top_levels(path):
            if name in LAYERS and LAYERS[name] > LAYERS[package]:
                violations.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not violations, violations


def test_library_never_imports_kfp():
    offenders = [
        str(path.relative_to(ROOT))
        for package, path in _sources()
        if package == "contrastive" and "kfp" in _imported_top_levels(path)
    ]
    assert not offenders


@pytest.mark.slow
def test_model_code_imports_without_tensorflow():
    # Make `import tensorflow` fail, then import the backend-independent modules on JAX.
    code = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tensorflow' or name.startswith('tensorflow.'):\n"
        "            raise ImportError('tensorflow is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {MODEL_MODULES!r}:\n"
        "    importlib.import_module('contrastive.' + m)\n"
        "print('ok')\n"
    )
    env = {"KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
