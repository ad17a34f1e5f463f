"""Run by test_data_parallel.py in a fresh process (JAX backend, 8 virtual CPU devices).

`python devices_check.py loss` prints JSON: for SupCon and NT-Xent, the loss and gradients of
one batch of 64 images on one device and split over 8 devices (Keras' `DataParallel` layouts),
and the mean of the 8 per-shard losses (what a per-replica loss computes).
`python devices_check.py epoch` prints JSON: the weights' largest difference after one
pretraining epoch on 1 and on 8 devices (same global batch, seed and data order).
`python devices_check.py ragged DIR` prints JSON: a data-parallel SupCon pretraining (kNN
monitor) and a baseline, streamed from an ingested dataset whose splits are no multiple of
the global batch (train 227, validation 37, test 41; batch 32), on however many devices this
process has (1 or 8): the histories, kNN accuracy, what each epoch dropped, and the
predictions of both models on every test image.

XLA_FLAGS=--xla_force_host_platform_device_count=8 and KERAS_BACKEND=jax must be set by the
caller: JAX reads them once, when it starts.
"""

import json
import sys

import jax
import keras
import numpy as np

from contrastive.config import load_config
from contrastive.losses import supcon_loss
from contrastive.training import pretrain
from contrastive.training.pretrain import build_pretrain_model

BATCH, DEVICES = 64, 8


def images(count, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (count, 28, 28, 1)).astype("uint8"),
        rng.integers(0, 4, count).astype("int32"),
    )


def check_loss():
    """Loss and gradients over the global batch vs one device vs the per-shard mean."""
    assert jax.device_count() == DEVICES, jax.devices()
    x, y = images(BATCH)
    result = {}
    for method in ("supcon", "simclr"):
        config = load_config("tiny", [f"train.method={method}", "train.online_probe=false"])
        keras.utils.set_random_seed(0)
        model = build_pretrain_model(config, (28, 28, 1))

        def loss_fn(trainable, non_trainable, images, labels, model=model, method=method):
            outputs, _ = model.stateless_call(trainable, non_trainable, images, training=True)
            return supcon_loss(
                outputs["projections"], None if method == "simclr" else labels, temperature=0.1
            )

        value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
        trainable = [np.asarray(v) for v in model.trainable_variables]
        non_trainable = [np.asarray(v) for v in model.non_trainable_variables]
        one = jax.devices()[0]

        def on_one_device(values, one=one):
            return [jax.device_put(v, one) for v in values]

        loss_1, grads_1 = value_and_grad(
            on_one_device(trainable),
            on_one_device(non_trainable),
            jax.device_put(x, one),
            jax.device_put(y, one),
        )
        distribution = keras.distribution.DataParallel()
        replicated = [
            jax.device_put(v, distribution.get_variable_layout(var).backend_layout)
            for v, var in zip(trainable, model.trainable_variables, strict=True)
        ]
        replicated_fixed = [
            jax.device_put(v, distribution.get_variable_layout(var).backend_layout)
            for v, var in zip(non_trainable, model.non_trainable_variables, strict=True)
        ]
        x_sharded = jax.device_put(x, distribution.get_data_layout(x.shape).backend_layout)
        y_sharded = jax.device_put(y, distribution.get_data_layout(y.shape).backend_layout)
        loss_8, grads_8 = value_and_grad(replicated, replicated_fixed, x_sharded, y_sharded)
        shard = BATCH // DEVICES
        per_shard = [
            float(
                value_and_grad(
                    on_one_device(trainable),
                    on_one_device(non_trainable),
                    jax.device_put(x[k * shard : (k + 1) * shard], one),
                    jax.device_put(y[k * shard : (k + 1) * shard], one),
                )[0]
            )
            for k in range(DEVICES)
        ]
        result[method] = {
            "loss_1_device": float(loss_1),
            "loss_8_devices": float(loss_8),
            "input_devices": len(x_sharded.sharding.device_set),
            "input_shard_rows": int(x_sharded.addressable_shards[0].data.shape[0]),
            "max_gradient_difference": max(
                float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(grads_1, grads_8, strict=True)
            ),
            "max_gradient": max(float(np.max(np.abs(np.asarray(g)))) for g in grads_1),
            "mean_of_shard_losses": float(np.mean(per_shard)),
        }
    result["batch_error"] = batch_error()
    return result


def batch_error():
    """The message for a global batch (60) that 8 devices cannot split evenly."""
    from contrastive.training.distribution import DistributionError, plan_layout

    config = load_config("tiny", ["train.distribution=data_parallel", "train.batch_size=60"])
    try:
        plan_layout(config.train)
    except DistributionError as error:
        return str(error)
    return None


def check_epoch():
    """One pretraining epoch on 1 device, then on 8, from the same seed and data."""
    x, y = images(4 * BATCH, seed=1)
    weights, histories = {}, {}
    for distribution in ("none", "data_parallel"):
        config = load_config(
            "tiny",
            [
                f"train.distribution={distribution}",
                "train.online_probe=false",
                "train.checkpoint_every=0",
                f"train.batch_size={BATCH}",
                "train.optimizer=sgd",
                "train.learning_rate=0.05",
            ],
        )
        encoder, history = pretrain(config, (x, y), None, num_classes=4)
        weights[distribution] = [np.asarray(v) for v in encoder.weights]
        histories[distribution] = history["loss"]
        sharding = encoder.weights[0].value.sharding
        if distribution == "data_parallel":
            devices_used = len(sharding.device_set)
    return {
        "max_weight_difference": max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(weights["none"], weights["data_parallel"], strict=True)
        ),
        "max_weight": max(float(np.max(np.abs(a))) for a in weights["none"]),
        "loss_1_device": histories["none"],
        "loss_8_devices": histories["data_parallel"],
        "devices_used": devices_used,
    }


def ragged_dataset(folder):
    """Ingested TFRecords: train 227, validation 37 (of 264 source train images), test 41."""
    import os

    from contrastive import data

    os.makedirs(folder, exist_ok=True)
    x, y = images(264 + 41, seed=3)
    y = (x[:, 0, 0, 0] % 4).astype("int64")  # a learnable label: pixel (0, 0) mod 4
    source = os.path.join(folder, "ragged.npz")
    np.savez(source, x_train=x[:264], y_train=y[:264], x_test=x[264:], y_test=y[264:])
    output = os.path.join(folder, "dataset")
    data.ingest(f"npz:{source}", output, validation_fraction=37 / 264, seed=0, progress=False)
    return output


def check_ragged(folder):
    """Pretraining (kNN monitor and summary) and a baseline on ragged splits, data-parallel
    over this process's devices; then each model's predictions on the whole test split."""
    import os

    from contrastive import tasks
    from contrastive.data import read_manifest
    from contrastive.modeldir import load_model_dir, read_json
    from contrastive.training import predict_proba

    dataset = ragged_dataset(folder)
    splits = {k: v["num_examples"] for k, v in read_manifest(dataset)["splits"].items()}
    overrides = [
        "train.distribution=data_parallel",
        "train.batch_size=32",
        "train.epochs=2",
        "train.classifier_epochs=1",
        "train.optimizer=sgd",
        "train.learning_rate=0.05",
        "train.checkpoint_every=0",
        "train.knn_max_examples=64",
    ]
    result = {"devices": jax.device_count(), "splits": splits}
    for step in ("pretrain", "baseline"):
        config = load_config("tiny", overrides)
        out = os.path.join(folder, f"{step}-{jax.device_count()}")
        if step == "pretrain":
            metrics = tasks.run_pretrain(dataset, out, config, method="supcon")
        else:
            metrics = tasks.run_train_baseline(dataset, out, config)
        info = read_json(os.path.join(out, "info.json"))
        history = read_json(os.path.join(out, "history.json"))
        result[step] = {
            "history": history,
            "knn_accuracy": metrics.get("knn_accuracy"),
            "dropped": info["distribution"].get("dropped_per_epoch"),
        }
    baseline = os.path.join(folder, f"baseline-{jax.device_count()}")
    model, _ = load_model_dir(baseline)
    test_x = np.concatenate([b[0] for b in _test_batches(dataset)])
    result["test_predictions"] = predict_proba(model, test_x, batch_size=32).tolist()
    evaluation = tasks.run_evaluate(
        dataset, baseline, predictions_path=os.path.join(folder, "p.parquet"), batch_size=32
    )
    result["evaluation"] = {k: evaluation[k] for k in ("accuracy", "num_examples")}
    return result


def _test_batches(dataset):
    from contrastive.data import read_split

    return list(read_split(dataset, "test", 16).as_numpy_iterator())


if __name__ == "__main__":
    checks = {"loss": check_loss, "epoch": check_epoch, "ragged": check_ragged}
    modes = sys.argv[1].split(",")
    if len(modes) == 1:
        print("RESULT " + json.dumps(checks[modes[0]](*sys.argv[2:])))
    else:  # several checks in this one process: {mode: result}
        print("RESULT " + json.dumps({mode: checks[mode](*sys.argv[2:]) for mode in modes}))
