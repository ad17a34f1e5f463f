"""Imports go one way: pipelines -> components -> contrastive, and none of them imports the test
suite (a method from elsewhere arrives through an entry point, `contrastive.methods`). Inside
`pipelines/`, the targets, the DAG, the local run and the CLI import one way too. The library
never imports kfp, the model code imports without TensorFlow, the registries the CLI reads
first (`methods`, `config`) import without Keras, and the top floor names no method. Nothing
outside `pipelines/targets/` compares a target's name, and nothing in the library but
`contrastive.environment` reads a named environment variable."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"contrastive": 0, "components": 1, "pipelines": 2, "tests": 3}
# Inside `pipelines/`: a module may import one of the same or a lower rank, never a higher.
# A target reads the choices and the package checks; the DAG asks the targets; the local run
# runs the DAG; the CLI drives them all. One exception, named: the Kubeflow launcher writes a
# step's command with the CLI's own spelling (`pipelines.cli.steps`, which imports no target).
PIPELINES_RANKS = {
    "options": 0,
    "cron": 0,
    "package": 1,
    "targets": 2,
    "remote": 3,
    "dag": 3,
    "local": 4,
    "cli": 5,
}
PIPELINES_EXCEPTIONS = {("pipelines/targets/trainjob.py", "pipelines.cli.steps")}
MODEL_MODULES = ["losses", "augment", "models", "training", "config", "evaluation", "methods"]
# Read to build the CLI, to check a configuration and to compile the DAG: no Keras there.
KERAS_FREE_MODULES = ["methods", "config", "tasks.sinks", "tasks.calls", "environment"]


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement of `path` names, those inside functions too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _imported_top_levels(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _imported_modules(path)}


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


def _pipelines_rank(module: str) -> int | None:
    parts = module.split(".")
    return PIPELINES_RANKS.get(parts[1]) if parts[0] == "pipelines" and len(parts) > 1 else None


def test_pipelines_subpackages_import_one_way():
    """targets never import the DAG, the local run or the CLI; the DAG never the local run
    or the CLI; the local run never the CLI (functions' imports included)."""
    violations = []
    for package, path in _sources():
        if package != "pipelines" or path.parent == ROOT / "pipelines" and path.stem == "__init__":
            continue
        relative = path.relative_to(ROOT)
        own = _pipelines_rank(".".join(relative.with_suffix("").parts))
        for module in _imported_modules(path):
            rank = _pipelines_rank(module)
            exempt = any(
                str(relative) == where and module.startswith(allowed)
                for where, allowed in PIPELINES_EXCEPTIONS
            )
            if rank is not None and own is not None and rank > own and not exempt:
                violations.append(f"{relative} imports {module}")
    assert not violations, violations


def _compares_a_target(node: ast.Compare, names: set[str]) -> bool:
    """`target == ...`, `x.target != ...`, `... in ("kubeflow", ...)`, `kind == "vertex"`."""
    operands = [node.left, *node.comparators]

    def is_target(operand) -> bool:
        named = getattr(operand, "id", None) or getattr(operand, "attr", None) or ""
        return "target" in named.lower()

    def is_target_name(operand) -> bool:
        if isinstance(operand, ast.Constant):
            return operand.value in names
        if isinstance(operand, (ast.Tuple, ast.List, ast.Set)):
            return any(is_target_name(item) for item in operand.elts)
        return False

    def is_other_text(operand) -> bool:  # `"://" in target`: a path named target, no target
        return isinstance(operand, ast.Constant) and not is_target_name(operand)

    comparing = any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops)
    named = any(map(is_target, operands)) and not any(map(is_other_text, operands))
    return comparing and (named or any(map(is_target_name, operands)))


def test_no_target_is_compared_by_name_outside_the_targets():
    """What differs between targets is asked of the target (`pipelines.targets`): no
    `target == "kubeflow"` anywhere else (the DAG, the CLI, submit, schedule, the library)."""
    from pipelines import targets

    names = set(targets.TARGETS)
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
        for package, path in _sources()
        if not path.is_relative_to(ROOT / "pipelines" / "targets")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Compare) and _compares_a_target(node, names)
    ]
    assert not found, found
    assert _compares_a_target(ast.parse('target != "local"').body[0].value, names)
    assert _compares_a_target(ast.parse("connection.target == KUBEFLOW").body[0].value, names)
    assert _compares_a_target(ast.parse('kind in ("vertex",)').body[0].value, names)
    assert not _compares_a_target(ast.parse('method == "supcon"').body[0].value, names)
    assert not _compares_a_target(ast.parse('"://" in target').body[0].value, names)


# `environ.get("NAME")`, `environ["NAME"]`, `os.getenv("NAME")`: a named variable read.
_READS = re.compile(r"""(environ\.get\(|environ\[|getenv\()\s*["'A-Z]""")


def test_only_contrastive_environment_reads_named_environment_variables():
    """The library reads its environment in one documented place (`contrastive.environment`);
    elsewhere it only passes `os.environ` on."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package, path in _sources()
        if package == "contrastive" and path.name != "environment.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _READS.search(line) and not line.lstrip().startswith("#")
    ]
    assert not found, found
    assert _READS.search('environ.get("CLUSTER_SPEC")') and _READS.search("os.getenv('HOME')")
