"""Fast task setters while a pipeline is built.

KFP 2.17's task setters (`set_env_variable`, `set_cpu_limit`, `set_memory_limit`,
`set_accelerator_type`, ...) each call `inspect.stack()` (`PipelineTask.
_ensure_container_spec_exists`) only to name themselves in the error they raise when the task
is not a container. `inspect.stack()` reads the source context of every frame on the stack:
under pytest or in a notebook that is tens of frames and most of the time a compile takes
(cProfile of a CLI test: 34.5 of 35.7 s of `build_pipeline` in it). `fast_setters()` gives
`kfp.dsl.pipeline_task` an `inspect` whose `stack()` walks the frames without reading any
source: the same `(frame, filename, lineno, function, None, None)` entries, so the setters
and their error message are unchanged, and the compiled YAML is byte-identical.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from collections.abc import Iterator

_lock = threading.RLock()  # a build inside a build (same thread) may enter again


class _FramesOnly:
    """`inspect` with a `stack()` that reads no source (everything else is `inspect`'s)."""

    def __getattr__(self, name):
        return getattr(inspect, name)

    @staticmethod
    def stack(context: int = 1) -> list[tuple]:
        del context  # no source lines are read, whatever was asked
        entries, frame = [], sys._getframe(1)  # from the caller of stack(), as inspect's
        while frame is not None:
            code = frame.f_code
            entries.append((frame, code.co_filename, frame.f_lineno, code.co_name, None, None))
            frame = frame.f_back
        return entries


@contextlib.contextmanager
def fast_setters() -> Iterator[None]:
    """Within the block, KFP's task setters find their own name without reading the source
    of every frame (see the module docstring); outside it nothing is changed. A KFP whose
    `pipeline_task` has no module-level `inspect` is left as it is."""
    from kfp.dsl import pipeline_task

    with _lock:
        previous = getattr(pipeline_task, "inspect", None)
        if previous is not inspect:  # set by an enclosing block, or another KFP: keep it
            yield
            return
        pipeline_task.inspect = _FramesOnly()
        try:
            yield
        finally:
            pipeline_task.inspect = previous
