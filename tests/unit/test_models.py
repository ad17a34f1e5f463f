"""Encoders and heads: feature sizes, parameter counts, errors, save and reload in a new process."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from contrastive import augment, models
from contrastive.augment import STRONG, build_augmenter
from contrastive.models import (
    ENCODERS,
    build_classifier_head,
    build_encoder,
    build_projection_head,
    register_encoder,
)

pytestmark = pytest.mark.backend

SOURCE_DIR = Path(__file__).resolve().parents[2] / "src"


def numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


def run_python(script, backend, *args):
    """Runs `script` in a fresh interpreter with `src` on the path; returns its stdout."""
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_DIR), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# (name, input shape, width, feature dim, parameter count). small_cnn on 32x32x3 and
# resnet50v2 (3 channels: 23,564,800) match the keras-io examples' model summaries.
ENCODER_CASES = [
    ("small_cnn", (28, 28, 1), None, 128, 223_744),
    ("small_cnn", (32, 32, 3), None, 128, 314_432),
    ("small_cnn", (28, 28, 1), 64, 64, 121_280),
    ("simclr_cnn", (28, 28, 1), None, 128, 460_544),
    ("simclr_cnn", (32, 32, 3), None, 128, 462_848),
    ("simclr_cnn", (32, 32, 3), 32, 32, 29_696),
    ("resnet18", (28, 28, 1), None, 512, 11_177_280),
    ("resnet18", (32, 32, 3), None, 512, 11_178_432),
    # JAX compiles an initializer per new kernel shape: about 10 s on 2 busy cores.
    pytest.param("resnet18", (32, 32, 3), 8, 64, 176_952, marks=pytest.mark.slow),
    # Once, on the size that needs the resize to 32.
    ("resnet50v2", (28, 28, 1), None, 2048, 23_558_528),
]


def test_registry_holds_the_four_encoders():
    assert sorted(ENCODERS) == ["resnet18", "resnet50v2", "simclr_cnn", "small_cnn"]


@pytest.mark.parametrize(("name", "shape", "width", "feature_dim", "parameters"), ENCODER_CASES)
def test_encoder_maps_images_to_features(name, shape, width, feature_dim, parameters):
    encoder = build_encoder(name, shape, width=width)
    images = np.random.default_rng(0).random((2, *shape), dtype="float32")

    features = numpy(encoder(images, training=False))

    assert encoder.name == name
    assert encoder.output_shape == (None, feature_dim)
    assert features.shape == (2, feature_dim)
    assert np.isfinite(features).all()
    assert encoder.count_params() == parameters


def test_simclr_cnn_keeps_the_example_network_on_96px():
    encoder = build_encoder("simclr_cnn", (96, 96, 3))

    assert [layer.padding for layer in encoder.layers if hasattr(layer, "padding")] == ["valid"] * 4
    assert encoder.layers[-2].output.shape == (None, 5 * 5 * 128)


def test_simclr_cnn_pads_only_where_28px_would_vanish():
    encoder = build_encoder("simclr_cnn", (28, 28, 1))

    paddings = [layer.padding for layer in encoder.layers if hasattr(layer, "padding")]
    assert paddings == ["valid", "valid", "valid", "same"]


def test_same_seed_gives_same_weights():
    first = build_encoder("small_cnn", (28, 28, 1), seed=3)
    second = build_encoder("small_cnn", (28, 28, 1), seed=3)
    other = build_encoder("small_cnn", (28, 28, 1), seed=4)

    for left, right in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])


@pytest.mark.parametrize(
    ("kind", "parameters", "layer_types"),
    [
        ("linear", 65_664, ["Dense"]),
        ("mlp", 328_320, ["Dense", "Dense"]),
    ],
)
def test_projection_head_shapes_and_unbounded_output(kind, parameters, layer_types):
    head = build_projection_head(kind, 512, projection_dim=128, hidden_dim=512, seed=0)
    features = np.random.default_rng(0).random((16, 512), dtype="float32")

    projections = numpy(head(features))

    assert head.name == "projection_head"
    assert projections.shape == (16, 128)
    assert head.count_params() == parameters
    assert [type(layer).__name__ for layer in head.layers[1:]] == layer_types
    assert head.layers[-1].activation is keras.activations.linear
    # No ReLU on the output: projections take both signs.
    assert projections.min() < 0.0 < projections.max()


@pytest.mark.parametrize(("kind", "parameters"), [("linear", 5_130), ("seed", 267_786)])
def test_classifier_head_outputs_probabilities(kind, parameters):
    head = build_classifier_head(kind, 512, 10, hidden_dim=512, dropout=0.5, seed=0)
    features = np.random.default_rng(0).normal(size=(16, 512)).astype("float32")

    probabilities = numpy(head(features, training=False))

    assert head.name == "classifier_head"
    assert probabilities.shape == (16, 10)
    assert head.count_params() == parameters
    assert probabilities.min() >= 0.0
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_seed_classifier_head_follows_the_example_layout():
    head = build_classifier_head("seed", 128, 10, hidden_dim=512, dropout=0.5)

    assert [type(layer).__name__ for layer in head.layers[1:]] == [
        "Dropout",
        "Dense",
        "Dropout",
        "Dense",
        "Activation",
    ]
    assert [layer.rate for layer in head.layers if hasattr(layer, "rate")] == [0.5, 0.5]
    assert head.layers[2].units == 512


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: build_encoder("vgg16", (32, 32, 3)), r"name='vgg16'.*resnet18.*small_cnn"),
        (lambda: build_encoder("small_cnn", (32, 32)), r"input_shape=\(32, 32\)"),
        (lambda: build_encoder("small_cnn", (32, 32, 0)), r"input_shape=\(32, 32, 0\)"),
        (lambda: build_encoder("small_cnn", (8, 8, 1)), r"\(8, 8, 1\)"),
        (lambda: build_encoder("resnet18", (32, 32, 3), width=-4), r"width=-4"),
        (lambda: build_encoder("resnet50v2", (32, 32, 3), width=64), r"width=64"),
        (lambda: build_encoder("resnet18", (32, 32, 3), seed=1.5), r"seed=1.5"),
        (lambda: build_projection_head("deep", 128), r"kind='deep'.*linear.*mlp"),
        (lambda: build_projection_head("mlp", 128, projection_dim=0), r"projection_dim=0"),
        (lambda: build_classifier_head("svm", 128, 10), r"kind='svm'.*linear.*seed"),
        (lambda: build_classifier_head("seed", 128, 0), r"num_classes=0"),
        (lambda: build_classifier_head("seed", 128, 10, dropout=1.0), r"dropout=1.0"),
    ],
)
def test_bad_arguments_raise_value_error_echoing_the_value(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_register_encoder_adds_a_builder_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(models, "ENCODERS", dict(models.ENCODERS))

    @register_encoder("flat")
    def flat(input_shape, width):
        inputs = keras.Input(shape=input_shape)
        return keras.Model(inputs, keras.layers.Flatten()(inputs), name="flat")

    assert models.build_encoder("flat", (4, 4, 1)).output_shape == (None, 16)
    with pytest.raises(ValueError, match="name='flat'"):
        register_encoder("flat")(flat)


RELOAD_SCRIPT = """
    import json, sys

    import keras
    import numpy as np

    import contrastive

    for case in json.loads(sys.argv[1]):
        model = keras.saving.load_model(case["model"], custom_objects=contrastive.custom_objects())
        inputs = np.load(case["inputs"])
        outputs = model(inputs, training=False)
        np.save(case["outputs"], keras.ops.convert_to_numpy(outputs))
        if case["augmenter"]:
            views = model.get_layer(case["augmenter"])(inputs, training=True)
            np.save(case["views"], keras.ops.convert_to_numpy(views))
"""


def _stack(name, shape, *parts):
    inputs = keras.Input(shape=shape)
    outputs = inputs
    for part in parts:
        outputs = part(outputs)
    return keras.Model(inputs, outputs, name=name)


@pytest.mark.slow
def test_models_reload_in_a_new_process_with_identical_outputs(tmp_path):
    models_to_save = {
        # The three custom augmentation layers (strong RGB views include grayscale) inside
        # a model, followed by small_cnn and the mlp projection head.
        "augmenter_small_cnn_mlp": _stack(
            "augmenter_small_cnn_mlp",
            (32, 32, 3),
            build_augmenter((32, 32, 3), **STRONG, seed=0),
            build_encoder("small_cnn", (32, 32, 3), seed=0),
            build_projection_head("mlp", 128, seed=0),
        ),
        "resnet18_classifier": _stack(
            "resnet18_classifier",
            (28, 28, 1),
            build_encoder("resnet18", (28, 28, 1), seed=1),
            build_classifier_head("seed", 512, 10, seed=1),
        ),
    }
    rng = np.random.default_rng(0)
    cases = []
    for name, model in models_to_save.items():
        inputs = rng.random((4, *model.input_shape[1:]), dtype="float32")
        case = {
            "model": str(tmp_path / f"{name}.keras"),
            "inputs": str(tmp_path / f"{name}_inputs.npy"),
            "outputs": str(tmp_path / f"{name}_outputs.npy"),
            "views": str(tmp_path / f"{name}_views.npy"),
            "augmenter": "augmenter" if name.startswith("augmenter") else None,
        }
        model.save(case["model"])
        np.save(case["inputs"], inputs)
        cases.append(case)

    run_python(RELOAD_SCRIPT, keras.backend.backend(), json.dumps(cases))

    for case, model in zip(cases, models_to_save.values(), strict=True):
        inputs = np.load(case["inputs"])
        expected = numpy(model(inputs, training=False))
        np.testing.assert_array_equal(np.load(case["outputs"]), expected)
        if case["augmenter"]:
            # Same seeds and seed state: the reloaded augmenter draws the same views.
            views = numpy(model.get_layer("augmenter")(inputs, training=True))
            np.testing.assert_array_equal(np.load(case["views"]), views)
            assert not np.allclose(views, inputs)


NO_TENSORFLOW_SCRIPT = """
    import sys

    class BlockTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorflow":
                raise ImportError(f"{name} is blocked")
            return None

    sys.meta_path.insert(0, BlockTensorFlow())

    import numpy as np

    from contrastive.augment import STRONG, build_augmenter
    from contrastive.models import build_encoder, build_projection_head

    images = np.random.default_rng(0).random((2, 28, 28, 1), dtype="float32")
    views = build_augmenter((28, 28, 1), **STRONG, seed=0)(images, training=True)
    features = build_encoder("small_cnn", (28, 28, 1), seed=0)(views)
    print(tuple(build_projection_head("mlp", 128, seed=0)(features).shape))
    assert "tensorflow" not in sys.modules
"""


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="its child runs on JAX whatever this run's backend: the TensorFlow pass runs it",
)
def test_modules_work_without_tensorflow():
    for module in (augment, models):
        source = Path(module.__file__).read_text()
        assert "import tensorflow" not in source and "from tensorflow" not in source

    assert run_python(NO_TENSORFLOW_SCRIPT, "jax").strip() == "(2, 128)"
