"""Export a trained classifier as a TensorFlow SavedModel for serving (TF backend only).

The `serve` signature takes raw images, `uint8 [batch, height, width, channels]`, and
returns `probabilities` (`float32 [batch, num_classes]`) and `class` (`int64 [batch]`).
Scaling to `[0, 1]` is inside the model (its first layer is `Rescaling(1/255)`), so a
client sends pixels as they are and cannot get the preprocessing wrong.

The signature takes the size and channels the model was trained at (the dataset's
`image_shape`). A request of another shape is refused with an `InvalidArgumentError` whose
message names both shapes (`serve: images must be uint8 [batch, H, W, C] ...`); it is not
resized silently, because only the client knows whether its crop matches the one ingest made
(`contrastive.data.images.RESIZE_METHOD`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any

from contrastive import load_model, storage

SAVED_MODEL_DIR = "saved_model"
SIGNATURE = "serve"


def export_saved_model(
    model: Any,
    export_dir: str | os.PathLike | None = None,
    *,
    from_logits: bool = False,
) -> str:
    """Writes a SavedModel with a uint8 `serve` signature.

    Args:
        model: a `keras.Model` or the path (local or gs://) of a `.keras` file. Its input is
            `[batch, H, W, C]` in `[0, 255]`; its output class scores `[batch, num_classes]`.
        export_dir: where to write (local or gs://). Default: `saved_model/` beside the
            `.keras` file; required when `model` is a model object.
        from_logits: the model outputs logits; apply softmax to get probabilities.

    Returns:
        `export_dir`.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "SavedModel export needs the TensorFlow backend. "
            f"Received: keras.backend.backend()={keras.backend.backend()!r}"
        )
    if isinstance(model, (str, os.PathLike)):
        model_path = os.fspath(model)
        if export_dir is None:
            export_dir = storage.join(_parent(model_path), SAVED_MODEL_DIR)
        model = _load_model(model_path)
    elif export_dir is None:
        raise ValueError("export_dir is required when exporting a model object")
    export_dir = os.fspath(export_dir)

    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or any(size is None for size in shape[1:]):
        raise ValueError(
            f"model input must be [batch, height, width, channels]. Received: shape={shape}"
        )
    if storage.is_gcs(export_dir):
        with tempfile.TemporaryDirectory(prefix="contrastive-export-") as folder:
            _write(model, shape, folder, from_logits)
            storage.copy_tree(folder, export_dir, last="saved_model.pb")
    else:
        _write(model, shape, export_dir, from_logits)
    return export_dir


def export_model_dir(model_dir: str, export_dir: str, *, environ=None, timeout=1800.0) -> str:
    """`export_saved_model` of a model directory's classifier, on the TensorFlow backend
    whichever backend this process runs: on another one (JAX trained it) the export runs in
    a child Python with `KERAS_BACKEND=tensorflow` (a `.keras` file loads on either backend).

    Args:
        model_dir: a complete local model directory (`contrastive.modeldir`).
        export_dir: where the SavedModel goes.
        environ: the child's environment before `KERAS_BACKEND` is set (default: this
            process's).
        timeout: seconds the child may take.

    Raises:
        RuntimeError: the child failed; its last output lines are in the message.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        from contrastive.modeldir import load_model_dir

        return export_saved_model(load_model_dir(model_dir)[0], export_dir)
    env = {**(os.environ if environ is None else environ), "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-m", "contrastive.export", os.fspath(model_dir), os.fspath(export_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"SavedModel export of {model_dir} on the TensorFlow backend failed "
            f"(exit {done.returncode}): {done.stderr[-2000:]}"
        )
    return os.fspath(export_dir)


def _parent(path: str) -> str:
    if storage.is_gcs(path):
        return path.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(path))


def _load_model(path: str):
    if not storage.is_gcs(path):
        return load_model(path)
    with tempfile.TemporaryDirectory(prefix="contrastive-export-") as folder:
        local = os.path.join(folder, os.path.basename(path))
        storage.copy_file(path, local)
        return load_model(local)


def _write(model: Any, shape: tuple, export_dir: str, from_logits: bool) -> None:
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec((None, *shape[1:]), tf.uint8, name="images")])
    def serve(images):
        height, width, channels = shape[1:]
        check = tf.debugging.assert_equal(
            tf.shape(images)[1:],
            tf.constant([height, width, channels]),
            message=f"serve: images must be uint8 [batch, {height}, {width}, {channels}], the "
            "size the model was trained at; resize them (centred crop, then bilinear) first. "
            "Received shape",
        )
        with tf.control_dependencies([check]):
            images = tf.identity(images)
        scores = model(tf.cast(images, tf.float32), training=False)
        probabilities = tf.nn.softmax(scores, axis=-1) if from_logits else scores
        return {
            "probabilities": tf.cast(probabilities, tf.float32),
            "class": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }

    archive.add_endpoint(SIGNATURE, serve)
    archive.write_out(export_dir, verbose=False)


if __name__ == "__main__":  # python -m contrastive.export MODEL_DIR EXPORT_DIR (TensorFlow)
    from contrastive.modeldir import load_model_dir

    export_saved_model(load_model_dir(sys.argv[1])[0], sys.argv[2])
