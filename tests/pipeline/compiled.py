"""Reading a compiled pipeline's tasks whatever `dsl.If` sub-DAGs they sit in."""


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
