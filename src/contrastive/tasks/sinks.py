"""Where a training step writes besides its model directory, as one value: `StepSinks`.

Built once per step: `for_pipeline_step` in a KFP component (from the pipeline's parameters and
the task's environment), `from_flags` in the CLI. `to_flags` writes the same value as the
command-line flags `add_flags` declares, so a step run as another command (a Kubeflow Trainer
TrainJob's `contrastive pretrain ...`) reads back what its component built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from contrastive import environment

# field -> (flag, help): the one spelling of the sinks on a command line.
_FLAGS = {
    "tensorboard": ("--tensorboard-dir", "TensorBoard logs (default: <output>/tensorboard)"),
    "durable": (
        "--durable-dir",
        "checkpoints mirrored here every epoch (a gs:// prefix or a mounted folder) and "
        "restored by a rerun; a failure no rerun can fix is recorded there",
    ),
    "progress": ("--progress-file", "append one JSON line per epoch to this local file"),
}


@dataclass(frozen=True)
class StepSinks:
    """A training step's sinks; None: the sink's default.

    Args:
        tensorboard: folder of the step's TensorBoard logs (`keras.callbacks.TensorBoard`);
            None: `<output>/tensorboard`.
        durable: the step's folder of `contrastive.durable`: checkpoints mirrored there every
            epoch outlive the pod and are restored by a retry, a permanent failure is recorded
            there (removed after success); None: checkpoints only in `<output>/checkpoints`.
        progress: local file the chief process appends one JSON line per epoch to
            (`training.callbacks.ProgressLog`, `contrastive run`'s live view); None: none.
    """

    tensorboard: str | None = None
    durable: str | None = None
    progress: str | None = None

    @classmethod
    def for_pipeline_step(
        cls,
        environ: Mapping[str, str],
        *,
        name: str,
        tensorboard_root: str = "",
        checkpoint_root: str = "",
        job_id: str = "",
        output_uri: str = "",
    ) -> StepSinks:
        """A pipeline step's sinks, from its parameters and `environ` (the component's
        `os.environ`, read by `contrastive.environment`): TensorBoard in the platform's folder
        (Vertex AI's `AIP_TENSORBOARD_LOG_DIR`), else `<tensorboard_root>/<name>`, else the
        default; the durable folder `durable.step_folder(checkpoint_root, job_id, name,
        output_uri=output_uri)` (which refuses an unusable `checkpoint_root`); progress in
        `<progress folder>/<name>.jsonl` when `contrastive run` gave one."""
        from contrastive import durable

        root = (tensorboard_root or "").rstrip("/")
        folder = environment.progress_dir(environ)
        return cls(
            tensorboard=environment.tensorboard_dir(environ)
            or (f"{root}/{name}" if root else None),
            durable=durable.step_folder(checkpoint_root, job_id, name, output_uri=output_uri),
            progress=str(Path(folder) / f"{name}.jsonl") if folder else None,
        )

    @staticmethod
    def add_flags(parser) -> None:
        """Declares `--tensorboard-dir`, `--durable-dir`, `--progress-file` on an argparse
        parser (empty: the default)."""
        for flag, help_text in _FLAGS.values():
            parser.add_argument(flag, default="", help=help_text)

    @classmethod
    def from_flags(cls, args) -> StepSinks:
        """The sinks of parsed `add_flags` arguments."""
        return cls(
            **{field: getattr(args, _dest(flag)) or None for field, (flag, _) in _FLAGS.items()}
        )

    def to_flags(self) -> list[str]:
        """The flags that `from_flags` reads back as this value (unset sinks left out)."""
        flags = []
        for field, (flag, _) in _FLAGS.items():
            if (value := getattr(self, field)) is not None:
                flags += [flag, value]
        return flags

    def replace(self, **changes) -> StepSinks:
        return dataclasses.replace(self, **changes)


def _dest(flag: str) -> str:
    """argparse's attribute for a flag: `--durable-dir` -> `durable_dir`."""
    return flag.lstrip("-").replace("-", "_")
