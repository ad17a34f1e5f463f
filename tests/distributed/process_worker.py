"""One of the processes of test_processes.py's two-process job (JAX backend, CPU, gloo).

    python process_worker.py PROCESS_ID PORT WORKDIR EPOCHS [EPOCH_PAUSE_SECONDS]

Joins the job through the library (`environment.process_group`, `initialize_processes`), pretrains
on the same 128 synthetic images with `train.distribution=data_parallel` and checkpoints in
WORKDIR/checkpoints (process 0 writes, both restore), then writes its weights and the
examples it fed to WORKDIR/process-<id>.npz. A failure exits 1 at once, as the CLI does.
EPOCH_PAUSE_SECONDS slows every epoch so a test can kill a process mid-run.
"""

import logging
import sys
import time
import traceback

import keras
import numpy as np

from contrastive import environment
from contrastive.config import load_config
from contrastive.training import distribution, pretrain
from pipelines.cli.app import _exit_now


def main(process_id, port, workdir, epochs, pause=0.0):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    group = environment.process_group(
        {}, coordinator=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
    )
    distribution.initialize_processes(group)
    config = load_config(
        "tiny",
        [
            "train.distribution=data_parallel",
            "train.online_probe=false",
            "train.batch_size=16",
            f"train.epochs={epochs}",
            "train.optimizer=sgd",
            "train.learning_rate=0.05",
        ],
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128, 28, 28, 1)).astype("uint8")
    y = np.arange(128) % 4  # the label is the example's index mod 4: see `fed` below
    x[:, 0, 0, 0] = np.arange(128)  # and pixel (0, 0) its index
    callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(pause))]
    layout = distribution.plan_layout(config.train)
    fed = distribution.process_slice(x, y, layout)[0][:, 0, 0, 0]
    encoder, history = pretrain(
        config,
        (x, y),
        None,
        num_classes=4,
        checkpoint_dir=f"{workdir}/checkpoints",
        callbacks=callbacks,
    )
    np.savez(
        f"{workdir}/process-{process_id}.npz",
        fed=fed,
        loss=np.asarray(history["loss"]),
        **{f"weight_{i}": np.asarray(v) for i, v in enumerate(encoder.weights)},
    )


if __name__ == "__main__":
    try:
        main(
            int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), *map(float, sys.argv[5:])
        )
    except Exception:  # a peer died or a collective failed: leave now, exit 1
        traceback.print_exc()
        _exit_now(1)
