"""The kfp.local internals a local run relies on, in one place, pinned to the version read.

kfp.local has no public hook for "a task starts / ends" nor for the order it runs tasks in,
and `contrastive run` needs both (its view, each task's own log). So this module wraps two of
its private functions and reads its topological sort, as kfp 2.17 defines them
(kubeflow/pipelines sdk/python/kfp/local: `orchestrator/task_executor.py`
`execute_single_task`, `task_dispatcher.py` `run_single_task_implementation`,
`graph_utils.py` `topological_sort_tasks`). `check_kfp` fails loudly, naming the installed
version, before a run starts on any other kfp.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.local.logs import TaskLogs
    from pipelines.local.view import RunView

# The kfp release whose kfp.local internals this module was written against (`pyproject.toml`
# pins kfp==2.17.3).
KFP_SERIES = "2.17."


class KfpVersionError(RuntimeError):
    """The installed kfp is not the one whose kfp.local internals `contrastive run` wraps."""


def check_kfp() -> None:
    """Raises `KfpVersionError` unless kfp is a `KFP_SERIES` release and has the functions
    wrapped here."""
    import kfp
    from kfp.local import graph_utils, task_dispatcher
    from kfp.local.orchestrator import task_executor

    version = getattr(kfp, "__version__", "unknown")
    missing = [
        name
        for module, name in (
            (task_executor, "execute_single_task"),
            (task_dispatcher, "run_single_task_implementation"),
            (graph_utils, "topological_sort_tasks"),
        )
        if not callable(getattr(module, name, None))
    ]
    if not version.startswith(KFP_SERIES) or missing:
        raise KfpVersionError(
            f"contrastive run wraps kfp.local's internals as kfp {KFP_SERIES}x defines them "
            f"(pipelines/local/kfp_hooks.py); installed kfp {version}"
            + (f" lacks {', '.join(missing)}" if missing else "")
            + f": install kfp=={KFP_SERIES}* (pyproject.toml) or update kfp_hooks. "
            f"Received: kfp={version!r}"
        )


def task_names(pipeline) -> dict[str, str]:
    """{DAG task name: display name} of the pipeline's tasks, in the order kfp.local runs
    them (its topological sort, a stack popped from the end); the tasks of a condition's
    sub-DAG (`dsl.If`) in its place."""
    from kfp.local import graph_utils

    spec = pipeline.pipeline_spec

    def names(dag) -> dict[str, str]:
        found = {}
        for name in reversed(graph_utils.topological_sort_tasks(dag.tasks)):
            component = spec.components.get(dag.tasks[name].component_ref.name)
            if component is not None and component.WhichOneof("implementation") == "dag":
                found.update(names(component.dag))
            else:
                found[name] = dag.tasks[name].task_info.name or name
        return found

    return names(spec.root.dag)


@contextlib.contextmanager
def observed_tasks(names: dict[str, str], view: RunView, logs: TaskLogs, poller):
    """Reports each task's state to `view` and sends its output to its own log, by wrapping
    the two functions of kfp.local (2.17) every task goes through:
    `task_executor.execute_single_task` (every task, cached or not) and
    `task_dispatcher.run_single_task_implementation` (a task that really runs)."""
    from kfp.local import status, task_dispatcher
    from kfp.local.orchestrator import task_executor

    execute = task_executor.execute_single_task
    dispatch = task_dispatcher.run_single_task_implementation
    current: dict[str, object] = {}

    def execute_single_task(*args, **kwargs):
        task = names.get(kwargs["task_name"], kwargs["task_name"])
        current.update(task=task, ran=False)
        logs.switch(task)
        try:
            outputs, task_status = execute(*args, **kwargs)
        except BaseException:
            view.finish(task, ok=False)
            raise
        finally:
            logs.switch(None)
        poller.drain(task)
        ok = task_status == status.Status.SUCCESS
        if ok and not current["ran"]:
            view.cached(task)
        else:
            view.finish(task, ok=ok)
        return outputs, task_status

    def run_single_task_implementation(*args, **kwargs):
        current["ran"] = True
        view.start(current["task"])
        return dispatch(*args, **kwargs)

    task_executor.execute_single_task = execute_single_task
    task_dispatcher.run_single_task_implementation = run_single_task_implementation
    try:
        yield
    finally:
        task_executor.execute_single_task = execute
        task_dispatcher.run_single_task_implementation = dispatch
