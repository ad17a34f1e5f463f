"""The whole DAG on this machine with kfp.local (`contrastive run`, `make run`): `run` (the
run, its cache key and resume), `view` (the live or plain view of its tasks), `logs` (each
task's log file, TensorFlow's start-up notices kept out of sight), `kfp_hooks` (the kfp.local
internals it wraps, checked against the pinned kfp). Compiling the DAG for it is the local
target's (`pipelines.targets.local`)."""

from pipelines.local.logs import native_notices_filtered
from pipelines.local.run import LocalRunError, earlier_run, run_local, run_with_view

__all__ = ["LocalRunError", "earlier_run", "native_notices_filtered", "run_local", "run_with_view"]
