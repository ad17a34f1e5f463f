"""A method added from the test suite: what a new method takes is this one module (its loss)
plus one entry (`TOY`, a `contrastive.methods.Method`).

The loss is alignment plus uniformity on the hypersphere (Wang and Isola 2020,
arXiv:2005.10242): the two views of an image pulled together, all projections spread
apart. It uses no label, so the entry pretrains once in a few-labels run.

`install(folder)` makes the entry a plugin as a package would ship it: an installed
distribution whose entry point in the group `contrastive.methods` names `TOY`; with
`folder` and the repository root on `PYTHONPATH`, every process (the CLI, each kfp.local
task) finds the method.
"""

import os
from pathlib import Path

import keras
from keras import ops

from contrastive.losses import ContrastiveLoss
from contrastive.methods import ENTRY_POINT_GROUP, Method

ROOT = Path(__file__).resolve().parents[1]


@keras.saving.register_keras_serializable(package="toy")
class AlignUniformLoss(ContrastiveLoss):
    """`mean ||z_a - z_b||^2 + log mean_{i,j} exp(-2 ||z_i - z_j||^2)` over L2-normalised
    projections `[batch, views >= 2, dim]` (`z_a`, `z_b` the first two views); labels unused."""

    def __init__(self, temperature=0.1, base_temperature=None, name="align_uniform", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = temperature  # part of the method contract; unused by this loss
        self.base_temperature = base_temperature

    def call(self, y_true, y_pred):
        del y_true
        z = ops.cast(y_pred, "float32")
        z = z * ops.rsqrt(ops.maximum(ops.sum(ops.square(z), axis=-1, keepdims=True), 1e-12))
        alignment = ops.mean(ops.sum(ops.square(z[:, 0] - z[:, 1]), axis=-1))
        flat = ops.reshape(z, (-1, ops.shape(z)[-1]))
        squared = ops.maximum(2.0 - 2.0 * ops.matmul(flat, ops.transpose(flat)), 0.0)
        return alignment + ops.log(ops.mean(ops.exp(-2.0 * squared)))

    def get_config(self):
        config = super().get_config()
        config.update(temperature=self.temperature, base_temperature=self.base_temperature)
        return config


TOY = Method(
    "toy",
    "Toy (alignment + uniformity)",
    loss="tests.toy_method:AlignUniformLoss",
    uses_labels=False,
    pretrain_once=True,
)


def install(folder: Path) -> dict[str, str]:
    """Writes a distribution whose entry point names `TOY` into `folder`; returns the
    environment of a process that finds it (`PYTHONPATH`: `folder`, the repository root)."""
    info = Path(folder) / "contrastive_toy_method-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: contrastive-toy-method\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntoy = tests.toy_method:TOY\n")
    path = [str(folder), str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
