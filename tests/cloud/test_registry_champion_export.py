"""`contrastive.export`: the champion as a SavedModel that serves raw uint8 images."""

import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("SavedModel export needs the TensorFlow backend", allow_module_level=True)
tf = pytest.importorskip("tensorflow")

from contrastive.export import export_saved_model  # noqa: E402


def _tiny_classifier(num_classes=3):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def test_champion_export_saved_model_serves_uint8_like_keras(tmp_path):
    keras.utils.set_random_seed(0)
    model = _tiny_classifier()
    model_path = tmp_path / "model" / "model.keras"
    model_path.parent.mkdir()
    model.save(model_path)
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)

    export_dir = export_saved_model(str(model_path))

    assert export_dir == str(tmp_path / "model" / "saved_model")  # beside the .keras file
    loaded = tf.saved_model.load(export_dir)
    serve = loaded.signatures["serve"]
    assert serve.structured_input_signature[1]["images"].dtype == tf.uint8
    assert serve.structured_input_signature[1]["images"].shape.as_list() == [None, 8, 8, 3]
    outputs = serve(images=tf.constant(images))
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs["class"].numpy(), expected.argmax(axis=-1))
    assert outputs["class"].dtype == tf.int64
    assert "serving_default" in loaded.signatures


def test_champion_export_from_logits_applies_softmax(tmp_path):
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    images = np.arange(32, dtype=np.uint8).reshape(2, 4, 4, 1)

    export_dir = export_saved_model(model, tmp_path / "export", from_logits=True)

    served = tf.saved_model.load(export_dir).signatures["serve"](images=tf.constant(images))
    logits = model.predict(images, verbose=0)
    expected = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert os.path.isfile(tmp_path / "export" / "saved_model.pb")


def test_champion_export_needs_export_dir_for_a_model_object():
    with pytest.raises(ValueError, match="export_dir is required"):
        export_saved_model(_tiny_classifier())


def test_a_request_of_another_size_is_refused_naming_both_shapes(tmp_path):
    # Global pooling would accept any size and answer nonsense; the signature must refuse.
    export_dir = export_saved_model(_tiny_classifier(), tmp_path / "export")
    serve = tf.saved_model.load(export_dir).signatures["serve"]
    assert serve(images=tf.zeros([2, 8, 8, 3], tf.uint8))["class"].shape == [2]
    for shape in ([2, 16, 16, 3], [1, 8, 8, 1]):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            serve(images=tf.zeros(shape, tf.uint8))
        message = str(error.value)
        assert (
            "serve: images must be uint8 [batch, 8, 8, 3], the size the model was trained at"
            in message
        )
        assert str(shape[1:]).replace(",", "") in message  # what was received: [16 16 3]
