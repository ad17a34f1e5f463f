"""Imports go one way: pipelines -> components -> contrastive, and none of them imports the test
suite (a method from elsewhere arrives through an entry point, `contrastive.methods`). The
library never imports kfp, the model code imports without TensorFlow, the registries the CLI
reads first (`methods`, `config`) import without Keras, and the top floor names no method."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"contrastive": 0, "components": 1, "pipelines": 2, "tests": 3}
MODEL_MODULES = ["losses", "augment", "models", "training", "config", "evaluation", "methods"]
# Read to build the CLI, to check a configuration and to compile the DAG: no Keras there.
KERAS_FREE_MODULES = ["methods", "config", "tasks.sinks"]


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


@pytest.mark.slow
def test_registries_import_without_keras():
    code = (
        "import importlib, json, sys\n"
        f"for m in {KERAS_FREE_MODULES!r}:\n"
        "    importlib.import_module('contrastive.' + m)\n"
        "print(json.dumps(sorted({'keras', 'tensorflow', 'jax'} & set(sys.modules))))\n"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_top_floor_names_no_method():
    """The DAG, the CLI and the local run list methods from `contrastive.methods` only."""
    import ast

    from contrastive import methods

    names = set(methods.names())
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}"
        for package, path in _sources()
        if package == "pipelines"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in names
    ]
    assert not found
