"""The local target: the DAG as `contrastive run` runs it on this machine with kfp.local.

No resources are asked for and nothing is retried (minutes of backoff on a laptop: run it
again, it resumes). kfp.local's cache key holds a task's environment, so every task carries a
fingerprint of the library's code (`CONTRASTIVE_LIBRARY`): a changed library is not served old
outputs. Every local run gets a new job id, so the durable checkpoint key is the fixed
`LOCAL_JOB_ID` under a `checkpoint_root` that `contrastive run` keys by the run's parameters
(`pipelines.local.run`): a run killed and started again with the same parameters resumes.
Running it is `pipelines.local`.
"""

from __future__ import annotations

from contrastive.fingerprints import library_fingerprint
from pipelines.targets.base import Target

LOCAL_JOB_ID = "local"
LIBRARY_VARIABLE = "CONTRASTIVE_LIBRARY"


class LocalTarget(Target):
    name = "local"
    label = "a local run"
    title = "this machine, kfp.local"
    # kfp.local resolves `{{$.pipeline_job_name}}` to "<pipeline>-<timestamp>".
    job_id = LOCAL_JOB_ID

    def __init__(self, options, settings=None):
        super().__init__(options, settings)
        self.fingerprint = library_fingerprint()

    def code(self, task):
        task.set_env_variable(LIBRARY_VARIABLE, self.fingerprint)
        return task

    def ingest(self, task):
        return self.code(task)

    def worker_image(self) -> str:
        return ""  # a local image (`contrastive:dev`) is in no registry a Dataflow job reads

    def accelerated(self, task):
        self.code(task)
        if self.options.backend == "jax":
            task.set_env_variable("KERAS_BACKEND", "jax")
        return task

    def light(self, task):
        return self.code(task)

    def retried(self, task):
        return task
