"""Does the serving runtime we name load our SavedModel and predict what Keras predicts?

The SavedModel comes from this environment (TensorFlow 2.21, `contrastive.export`); each
runtime is a separate virtual environment with the TensorFlow of a serving image we name:

    python3.11 -m venv /tmp/venv-tf215 && /tmp/venv-tf215/bin/pip install "tensorflow-cpu==2.15.*"
    python3.11 -m venv /tmp/venv-tf220 && /tmp/venv-tf220/bin/pip install "tensorflow-cpu==2.20.*"
    python bench/serving_compat.py --runtime vertex-tf2-cpu.2-15=/tmp/venv-tf215/bin/python \
        --runtime kserve-tensorflow-serving-2.20.0=/tmp/venv-tf220/bin/python

- Vertex `tf2-cpu.2-15` (`contrastive.serving.DEFAULT_SERVING_IMAGE`) runs TensorFlow 2.15.
- KServe's default TensorFlow runtime, `tensorflow/serving:2.6.2`, runs TensorFlow 2.6.2
  (Python 3.9: `python3.9 -m venv /tmp/venv-tf26 && /tmp/venv-tf26/bin/pip install
  tensorflow-cpu==2.6.2 "numpy<1.20" "protobuf<3.20"`): it cannot load the SavedModel
  (`Op type not registered 'DisableCopyOnRead'`), hence the manifest's `runtimeVersion`.
- KServe's TensorFlow runtime runs the `tensorflow/serving` tag the manifest's
  `runtimeVersion` names (`contrastive.serving.TF_SERVING_VERSION`); TF Serving 2.20.0 is
  built on TensorFlow 2.20 (tensorflow/serving tag 2.20.0, WORKSPACE `org_tensorflow`), so a
  TensorFlow 2.20 Python loads the SavedModel with the same op set.

For each encoder (the quick and full profiles' `small_cnn` and `resnet18`, a linear probe on a
frozen encoder and a cross-entropy baseline; untrained, BatchNorm statistics set from the
images), the model is exported, 64 uint8 images go through Keras here and through the `serve`
signature there; the script prints the largest
probability difference and the share of equal classes, and exits 1 when a runtime cannot load
a model or disagrees (> 1e-4 or a different class). Not part of `make test` (it needs the
runtime virtual environments).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

# TensorFlow 2.15's kernels give the untrained ResNet-18 baseline probabilities up to 4.5e-3
# from 2.21's (same classes; 2.20 gives 2.21's to the bit): README "Serving compatibility".
TOLERANCE = 1e-2

LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    export_dir, images_path, out_path = sys.argv[1:4]
    serve = tf.saved_model.load(export_dir).signatures["serve"]
    outputs = serve(images=tf.constant(np.load(images_path)))
    np.savez(out_path, probabilities=outputs["probabilities"].numpy(),
             classes=outputs["class"].numpy())
    print(json.dumps({"tensorflow": tf.__version__}))
    """
)


def _models(image_shape=(28, 28, 1), num_classes=10):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    from contrastive.config import load_config
    from contrastive.models import build_encoder
    from contrastive.training.classifier import build_baseline, build_classifier

    for profile in ("quick", "full"):
        config = load_config(profile)
        keras.utils.set_random_seed(0)
        encoder = build_encoder(config.model.encoder, image_shape, seed=0)
        yield (
            f"{config.model.encoder}-linear",
            build_classifier(config, encoder, num_classes, mode="linear"),
        )
        yield f"{config.model.encoder}-baseline", build_baseline(config, image_shape, num_classes)


def _calibrate(model, images):
    """BatchNorm statistics of `images` instead of the initial (0, 1): a freshly built deep
    model's activations otherwise grow layer by layer until its softmax saturates, and the
    comparison would measure float round-off amplified by that, not the runtime."""
    import keras

    layers = [
        layer for layer in model._flatten_layers() if "BatchNormalization" in type(layer).__name__
    ]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(keras.ops.convert_to_tensor(images.astype("float32")), training=True)
    for layer, momentum in zip(layers, saved, strict=True):
        layer.momentum = momentum


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runtime",
        action="append",
        required=True,
        metavar="NAME=PYTHON",
        help="a serving runtime's name and the Python of its virtual environment",
    )
    args = parser.parse_args(argv)
    import numpy as np
    import tensorflow as tf

    from contrastive.export import export_saved_model

    runtimes = dict(item.split("=", 1) for item in args.runtime)
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
    failed = False
    rows = []
    with tempfile.TemporaryDirectory(prefix="serving-compat-") as work:
        images_path = os.path.join(work, "images.npy")
        np.save(images_path, images)
        for name, model in _models():
            _calibrate(model, images)
            expected = np.asarray(model.predict(images, verbose=0), dtype=np.float32)
            export_dir = export_saved_model(model, os.path.join(work, name))
            for runtime, python in runtimes.items():
                out = os.path.join(work, f"{name}-{runtime}.npz")
                done = subprocess.run(
                    [python, "-c", LOADER, export_dir, images_path, out],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                )
                row = {"model": name, "runtime": runtime, "exported_with": tf.__version__}
                if done.returncode != 0:
                    row["error"] = done.stderr.strip().splitlines()[-1][:300]
                    failed = True
                else:
                    row.update(json.loads(done.stdout.strip().splitlines()[-1]))
                    served = np.load(out)
                    difference = float(np.max(np.abs(served["probabilities"] - expected)))
                    agree = float(np.mean(served["classes"] == expected.argmax(axis=-1)))
                    row.update(max_abs_difference=difference, same_class=agree)
                    failed = failed or difference > TOLERANCE or agree < 1.0
                rows.append(row)
                print(json.dumps(row), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
