"""What the TensorFlow backend's MirroredStrategy computes for the contrastive loss.

Evaluates the same SupCon model on the same 64 images twice on the TensorFlow backend: on one
device, and under `tf.distribute.MirroredStrategy` over 2 logical CPU devices (Keras 3's TF
trainer runs `test_step` / `train_step` once per replica). Prints both losses and the mean of
the losses of the two 32-image halves. Augmentation is off at evaluation, so the three figures
are deterministic. The figures decide why `train.distribution=data_parallel` refuses the
TensorFlow backend (README "Scale out", docs/BENCHMARKS.md).

    KERAS_BACKEND=tensorflow python bench/check_tf_mirrored.py
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402

from contrastive.config import load_config  # noqa: E402
from contrastive.training.pretrain import build_pretrain_model  # noqa: E402


def main():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 28, 28, 1)).astype("uint8")
    y = rng.integers(0, 4, 64).astype("int32")
    config = load_config("tiny", ["train.online_probe=false"])

    def loss_of(images, labels, strategy=None):
        keras.utils.set_random_seed(0)
        scope = strategy.scope() if strategy else tf.init_scope()
        with scope:
            model = build_pretrain_model(config, (28, 28, 1))
            model.compile(optimizer="adam", jit_compile=False)
        return float(model.evaluate(images, labels, batch_size=len(images), verbose=0)[0])

    one_device = loss_of(x, y)
    halves = [loss_of(x[:32], y[:32]), loss_of(x[32:], y[32:])]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored = loss_of(x, y, strategy)
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "loss_one_device_global_batch": one_device,
                "loss_mirrored_2_replicas": mirrored,
                "mean_of_half_batch_losses": float(np.mean(halves)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
