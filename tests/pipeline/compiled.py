"""Compiling the pipeline once per option set in a test process, and reading a compiled
pipeline's tasks whatever `dsl.If` sub-DAGs they sit in."""

import copy
import tempfile
from pathlib import Path

import yaml

from pipelines.package import YAML_LOADER

# The YAML of each option set compiled in this process: a few-labels compile takes 10-20 s
# on the CI machine, and several modules read the same option sets.
_TEXTS: dict[str, str] = {}
# Each text's pipeline spec, loaded once (LibYAML's parser where PyYAML has it) and copied for
# each caller: the tests read the same texts ~90 times, 0.5 s each with PyYAML's pure-Python
# parser (a few-labels spec), against 5 ms for a deep copy.
_SPECS: dict[str, dict] = {}


def _key(options: dict) -> str:
    return repr(sorted(options.items()))


def compiled_text(**options) -> str:
    """The YAML `kfp.compiler` writes for `pipelines.dag.build_pipeline(**options)`, compiled
    once per distinct `options` in this process."""
    key = _key(options)
    if key not in _TEXTS:
        from kfp import compiler

        from pipelines.dag import build_pipeline

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "pipeline.yaml"
            compiler.Compiler().compile(build_pipeline(**options), str(path))
            _TEXTS[key] = path.read_text()
    return _TEXTS[key]


def compiled(**options) -> dict:
    """`compiled_text(**options)` loaded: the pipeline spec (the first YAML document; a
    Kubeflow target's platform spec is the second), a new dict for each caller."""
    key = _key(options)
    if key not in _SPECS:  # the loader `contrastive submit` reads packages with
        _SPECS[key] = next(yaml.load_all(compiled_text(**options), Loader=YAML_LOADER))
    return copy.deepcopy(_SPECS[key])


def flat_tasks(spec: dict) -> dict[str, dict]:
    """Every container task of a compiled pipeline (YAML loaded as a dict) by its DAG key,
    the tasks of condition sub-DAGs (`dsl.If`) included.

    A task inside a sub-DAG reads what the sub-DAG received from outside
    (`componentInputParameter` / `componentInputArtifact` `pipelinechannel--...`); those inputs
    are rewritten to what the enclosing task passes in, so that edges (`producerTask`) and
    pipeline parameters (`componentInputParameter: <root input>`) read as in a flat DAG.
    """
    found: dict[str, dict] = {}

    def visit(tasks: dict, outer: dict) -> None:
        for key, task in tasks.items():
            task = _resolved(task, outer)
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                visit(component["dag"]["tasks"], task.get("inputs", {}))
            else:
                found[key] = task

    visit(spec["root"]["dag"]["tasks"], {})
    return found


def _resolved(task: dict, outer: dict) -> dict:
    if not outer:
        return task
    inputs = task.get("inputs", {})
    resolved = {}
    for kind, source_key in (
        ("parameters", "componentInputParameter"),
        ("artifacts", "componentInputArtifact"),
    ):
        values = {}
        for name, value in inputs.get(kind, {}).items():
            channel = value.get(source_key)
            values[name] = outer.get(kind, {}).get(channel, value) if channel else value
        if values:
            resolved[kind] = values
    return {**task, "inputs": resolved} if resolved else task
