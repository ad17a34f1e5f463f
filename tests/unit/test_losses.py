"""Tests for contrastive.losses against loop-by-loop NumPy references."""

import ast
import functools
import math
from pathlib import Path

import keras
import numpy as np
import pytest

from contrastive import losses, methods
from contrastive.losses import (
    NPairsLoss,
    SimCLRLoss,
    SupConLoss,
    npairs_loss,
    supcon_loss,
)


def get_loss(method, temperature, base_temperature=None):
    return methods.get(method).build_loss(temperature, base_temperature)


pytestmark = pytest.mark.backend


# ----------------------------------------------------------------------------------------------
# Independent references: float64, one anchor at a time, written from the papers' formulas.


def reference_supcon(features, labels=None, temperature=0.1, base_temperature=None):
    """Khosla et al. 2020 Eq. 2, mean over anchors that have a positive (0 if none has)."""
    features = np.asarray(features, dtype=np.float64)
    batch, views, _ = features.shape
    entries = [(image, view) for image in range(batch) for view in range(views)]
    unit = [features[i, v] / np.linalg.norm(features[i, v]) for i, v in entries]
    scale = 1.0 if base_temperature is None else temperature / base_temperature

    def is_positive(anchor, other):
        anchor_image, other_image = entries[anchor][0], entries[other][0]
        if anchor_image == other_image:
            return True
        if labels is None or labels[anchor_image] < 0:
            return False
        return labels[anchor_image] == labels[other_image]

    anchor_losses = []
    for anchor in range(len(entries)):
        others = [other for other in range(len(entries)) if other != anchor]
        positives = [other for other in others if is_positive(anchor, other)]
        if not positives:
            continue
        logits = {other: unit[anchor] @ unit[other] / temperature for other in others}
        largest = max(logits.values())
        log_denominator = largest + math.log(sum(math.exp(x - largest) for x in logits.values()))
        log_probs = [logits[p] - log_denominator for p in positives]
        anchor_losses.append(-scale * sum(log_probs) / len(positives))
    return sum(anchor_losses) / len(anchor_losses) if anchor_losses else 0.0


def reference_npairs(features, labels, temperature=0.05):
    """tfa.losses.npairs_loss(labels, normalized z @ z.T / temperature), row by row."""
    features = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)
    unit = [row / np.linalg.norm(row) for row in features]
    row_losses = []
    for i in range(len(labels)):
        logits = [unit[i] @ unit[j] / temperature for j in range(len(labels))]
        largest = max(logits)
        log_denominator = largest + math.log(sum(math.exp(x - largest) for x in logits))
        same = [j for j in range(len(labels)) if labels[j] == labels[i]]
        row_losses.append(-sum(logits[j] - log_denominator for j in same) / len(same))
    return sum(row_losses) / len(row_losses)


def as_float(value):
    return float(keras.ops.convert_to_numpy(value))


def evaluate(loss_fn, features, labels=None, **kwargs):
    """`loss_fn(features, labels, **kwargs)` as a float.

    Under JAX the call is jit-compiled (as in `fit`): eager JAX compiles every op separately
    for each new shape, which costs seconds per call on a small CPU.
    """
    if keras.backend.backend() != "jax":
        return as_float(loss_fn(features, labels, **kwargs))
    compiled = _jax_compiled(loss_fn, labels is not None, tuple(sorted(kwargs.items())))
    return as_float(compiled(features) if labels is None else compiled(features, labels))


@functools.cache
def _jax_compiled(loss_fn, with_labels, kwargs):
    import jax

    if with_labels:
        return jax.jit(lambda features, labels: loss_fn(features, labels, **dict(kwargs)))
    return jax.jit(lambda features: loss_fn(features, **dict(kwargs)))


def gradient(loss_fn, features):
    """d loss_fn(features) / d features as NumPy, through the backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        features = tf.constant(features)
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = loss_fn(features)
        return tape.gradient(loss, features).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.jit(jax.grad(loss_fn))(jax.numpy.asarray(features)))
    pytest.skip(f"no gradient helper for backend {backend}")


def random_case(seed, batch, views, dim, label_kind):
    rng = np.random.default_rng(seed)
    features = rng.normal(scale=3.0, size=(batch, views, dim)).astype("float32")
    if label_kind == "none":
        labels = None
    elif label_kind == "repeated":
        labels = rng.integers(0, max(2, batch // 3), size=batch)
    else:
        labels = rng.permutation(batch) + 10
    return features, labels


# ----------------------------------------------------------------------------------------------
# supcon_loss

# (batch, views, dim). Tests reuse these shapes so that JAX compiles few programs.
SHAPES = [(2, 1, 3), (2, 2, 3), (5, 3, 16), (8, 2, 8), (12, 1, 4), (6, 3, 5)]


@pytest.mark.parametrize("label_kind", ["none", "repeated", "unique"])
@pytest.mark.parametrize(("batch", "views", "dim"), SHAPES)
def test_supcon_matches_reference(batch, views, dim, label_kind):
    features, labels = random_case(batch * 100 + views * 10 + dim, batch, views, dim, label_kind)
    expected = reference_supcon(features, labels)
    np.testing.assert_allclose(evaluate(supcon_loss, features, labels), expected, 1e-5, 1e-5)


@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_supcon_matches_reference_across_temperatures(temperature):
    features, labels = random_case(7, 8, 2, 8, "repeated")
    expected = reference_supcon(features, labels, temperature=temperature)
    actual = evaluate(supcon_loss, features, labels, temperature=temperature)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_supcon_unlabeled_entries_only_match_their_own_views():
    features, _ = random_case(3, 8, 2, 8, "none")
    labels = np.array([0, -1, 0, -1, 1, 1, 2, -1])
    expected = reference_supcon(features, labels)
    np.testing.assert_allclose(evaluate(supcon_loss, features, labels), expected, rtol=1e-5)
    all_unlabeled = evaluate(supcon_loss, features, np.full(8, -1))
    np.testing.assert_allclose(all_unlabeled, evaluate(supcon_loss, features), rtol=1e-6)


def test_supcon_accepts_column_labels():
    features, labels = random_case(4, 8, 2, 8, "repeated")
    np.testing.assert_allclose(
        evaluate(supcon_loss, features, labels[:, None]),
        evaluate(supcon_loss, features, labels),
        rtol=1e-6,
    )


@pytest.mark.parametrize(("batch", "views", "dim"), [SHAPES[1], SHAPES[2], SHAPES[3]])
def test_simclr_identity_for_equal_features(batch, views, dim):
    # Every other entry has the same logit, so each positive has probability 1 / (N - 1).
    features = np.full((batch, views, dim), 0.3, dtype="float32")
    expected = math.log(batch * views - 1)
    np.testing.assert_allclose(evaluate(supcon_loss, features), expected, rtol=1e-5)


def test_supcon_fixed_value_for_orthogonal_images():
    # Both views of image 0 are e1, of image 1 are e2: per anchor, one positive at 1/T and two
    # negatives at 0, so the loss is log(1 + 2 exp(-1/T)) = 9.0796e-05 at T = 0.1.
    features = np.array([[[1, 0, 0], [1, 0, 0]], [[0, 1, 0], [0, 1, 0]]], dtype="float32")
    expected = math.log1p(2 * math.exp(-10.0))
    np.testing.assert_allclose(evaluate(supcon_loss, features), expected, rtol=0, atol=1e-7)


def test_supcon_scales_features_away():
    features, labels = random_case(5, 8, 2, 8, "repeated")
    np.testing.assert_allclose(
        evaluate(supcon_loss, features * 100.0, labels),
        evaluate(supcon_loss, features, labels),
        rtol=1e-5,
    )


def test_base_temperature_scales_the_loss():
    features, labels = random_case(11, 8, 2, 8, "repeated")
    plain = evaluate(supcon_loss, features, labels)
    scaled = evaluate(supcon_loss, features, labels, base_temperature=0.07)
    np.testing.assert_allclose(scaled, plain * 0.1 / 0.07, rtol=1e-6)
    expected = reference_supcon(features, labels, base_temperature=0.07)
    np.testing.assert_allclose(scaled, expected, rtol=1e-5)


def test_anchors_without_positives_give_zero():
    features, labels = random_case(13, 12, 1, 4, "unique")
    assert evaluate(supcon_loss, features, labels) == 0.0
    # One view without labels: no anchor has a positive either.
    assert evaluate(supcon_loss, features) == 0.0
    grads = gradient(lambda f: supcon_loss(f, labels), features)
    np.testing.assert_array_equal(grads, 0.0)


def test_mean_runs_over_anchors_with_a_positive():
    # Images 0 and 1 share a class, the others are alone: only 2 of the 12 anchors count.
    features, _ = random_case(17, 12, 1, 4, "none")
    labels = np.array([0, 0, *range(1, 11)])
    unit = features[:, 0] / np.linalg.norm(features[:, 0], axis=1, keepdims=True)
    terms = []
    for anchor, positive in [(0, 1), (1, 0)]:
        logits = unit[anchor] @ unit.T / 0.1
        others = np.delete(logits, anchor)
        terms.append(np.log(np.exp(others).sum()) - logits[positive])
    np.testing.assert_allclose(evaluate(supcon_loss, features, labels), np.mean(terms), 1e-5)


def test_one_class_matches_reference():
    features, _ = random_case(19, 8, 2, 8, "none")
    labels = np.zeros(8, dtype="int64")
    expected = reference_supcon(features, labels)
    np.testing.assert_allclose(evaluate(supcon_loss, features, labels), expected, rtol=1e-5)


def test_batch_of_two():
    features, _ = random_case(23, 2, 1, 3, "none")
    # Same class, one view: each anchor's only other entry is its positive, so log p = 0.
    np.testing.assert_allclose(evaluate(supcon_loss, features, np.array([4, 4])), 0, atol=1e-6)
    assert evaluate(supcon_loss, features, np.array([4, 5])) == 0.0
    two_views, _ = random_case(23, 2, 2, 3, "none")
    expected = reference_supcon(two_views, [4, 5])
    np.testing.assert_allclose(
        evaluate(supcon_loss, two_views, np.array([4, 5])), expected, rtol=1e-5
    )


def test_low_temperature_is_finite():
    features, labels = random_case(29, 8, 2, 8, "repeated")
    loss = evaluate(supcon_loss, features, labels, temperature=0.01)
    assert math.isfinite(loss)
    np.testing.assert_allclose(
        loss, reference_supcon(features, labels, temperature=0.01), rtol=1e-5, atol=1e-4
    )
    # Opposite views: every logit off the diagonal is -1/T; without the shift by the row
    # maximum over the other entries, exp(-200) underflows to 0 and the log gives -inf.
    opposite = np.stack([np.ones((8, 8)), -np.ones((8, 8))], axis=1).astype("float32")
    assert math.isfinite(evaluate(supcon_loss, opposite, labels, temperature=0.01))
    grads = gradient(lambda f: supcon_loss(f, labels, temperature=0.01), features)
    assert np.all(np.isfinite(grads))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_input_is_finite_and_close(dtype):
    features, labels = random_case(31, 8, 2, 8, "repeated")
    half = keras.ops.cast(features, dtype)
    reference = evaluate(supcon_loss, features, labels)
    np.testing.assert_allclose(evaluate(supcon_loss, half, labels), reference, rtol=2e-2)
    assert math.isfinite(evaluate(supcon_loss, half, labels, temperature=0.01))


def test_output_is_float32_for_half_precision_input():
    # Eager, on the shape test_wrapper_runs_eagerly uses, so JAX reuses its compiled ops.
    features, labels = random_case(31, 2, 2, 3, "repeated")
    for dtype in ["float16", "bfloat16"]:
        loss = supcon_loss(keras.ops.cast(features, dtype), labels)
        assert keras.backend.standardize_dtype(loss.dtype) == "float32"


@pytest.mark.parametrize("label_kind", ["none", "repeated"])
def test_gradients_match_finite_differences(label_kind):
    features, labels = random_case(37, 4, 2, 3, label_kind)
    grads = gradient(lambda f: supcon_loss(f, labels), features)
    assert np.all(np.isfinite(grads))
    step = 1e-5
    numeric = np.zeros(features.shape)
    for index in np.ndindex(features.shape):
        upper, lower = features.astype(np.float64), features.astype(np.float64)
        upper[index] += step
        lower[index] -= step
        numeric[index] = (reference_supcon(upper, labels) - reference_supcon(lower, labels)) / (
            2 * step
        )
    np.testing.assert_allclose(grads, numeric, atol=1e-4)


def test_gradients_finite_for_equal_and_zero_features():
    equal = np.ones((8, 2, 8), dtype="float32")
    assert np.all(np.isfinite(gradient(lambda f: supcon_loss(f, temperature=0.01), equal)))
    zeros = np.zeros((8, 2, 8), dtype="float32")
    assert math.isfinite(evaluate(supcon_loss, zeros))
    assert np.all(np.isfinite(gradient(supcon_loss, zeros)))


# ----------------------------------------------------------------------------------------------
# npairs_loss


@pytest.mark.parametrize("label_kind", ["repeated", "unique"])
@pytest.mark.parametrize(("batch", "dim", "with_view_axis"), [(2, 3, False), (16, 4, True)])
def test_npairs_matches_reference(batch, dim, with_view_axis, label_kind):
    features, labels = random_case(batch * 10 + dim, batch, 1, dim, label_kind)
    expected = reference_npairs(features, labels)
    inputs = features if with_view_axis else features[:, 0]
    np.testing.assert_allclose(evaluate(npairs_loss, inputs, labels), expected, 1e-5, 1e-5)


def test_npairs_base_temperature_and_low_temperature():
    features, labels = random_case(41, 16, 1, 4, "repeated")
    plain = evaluate(npairs_loss, features, labels)
    scaled = evaluate(npairs_loss, features, labels, base_temperature=0.1)
    np.testing.assert_allclose(scaled, plain * 0.5, rtol=1e-6)
    half = keras.ops.cast(features, "float16")
    assert math.isfinite(evaluate(npairs_loss, half, labels, temperature=0.01))
    grads = gradient(lambda f: npairs_loss(f, labels, temperature=0.01), features)
    assert np.all(np.isfinite(grads))


def test_npairs_unlabeled_rows_target_only_themselves():
    features, _ = random_case(43, 16, 1, 4, "none")
    labels = np.array([-1] * 8 + [0, 0, 1, 1, 2, 2, 3, 3])
    targets = np.eye(16)
    for first in range(8, 16, 2):
        targets[first : first + 2, first : first + 2] = 0.5
    unit = features[:, 0] / np.linalg.norm(features[:, 0], axis=1, keepdims=True)
    logits = unit @ unit.T / 0.05
    log_prob = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(np.sum(targets * log_prob, axis=1))
    np.testing.assert_allclose(evaluate(npairs_loss, features, labels), expected, 1e-5, 1e-6)


# ----------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("temperature", [0, -1, float("nan")])
def test_bad_temperature_raises(temperature):
    features = np.ones((2, 2, 3), dtype="float32")
    message = f"temperature must be > 0. Received: temperature={temperature}"
    with pytest.raises(ValueError, match=message):
        supcon_loss(features, temperature=temperature)
    with pytest.raises(ValueError, match=message):
        npairs_loss(features[:, :1], [0, 1], temperature=temperature)
    with pytest.raises(ValueError, match=message):
        SupConLoss(temperature=temperature)
    with pytest.raises(ValueError, match=message):
        get_loss("npairs", temperature)


def test_bad_base_temperature_raises():
    with pytest.raises(ValueError, match="Received: base_temperature=-0.5"):
        supcon_loss(np.ones((2, 2, 3)), base_temperature=-0.5)
    with pytest.raises(ValueError, match="Received: base_temperature=0"):
        SimCLRLoss(base_temperature=0)


def test_bad_feature_shapes_raise():
    with pytest.raises(ValueError, match=r"features.shape=\(4, 8\)"):
        supcon_loss(np.ones((4, 8)))
    with pytest.raises(ValueError, match=r"features.shape=\(4, 2, 8\)"):
        npairs_loss(np.ones((4, 2, 8)), np.arange(4))


def test_label_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"labels.shape=\(3,\), features.shape=\(4, 2, 8\)"):
        supcon_loss(np.ones((4, 2, 8)), np.arange(3))
    with pytest.raises(ValueError, match=r"labels.shape=\(4, 2\)"):
        npairs_loss(np.ones((4, 8)), np.zeros((4, 2)))


def test_get_loss_names_bad_method():
    with pytest.raises(ValueError, match="Received: method='triplet'"):
        get_loss("triplet", 0.1)


def test_sample_weight_is_refused():
    features, labels = random_case(47, 4, 2, 3, "repeated")
    with pytest.raises(ValueError, match=r"sample_weight with shape \(4,\)"):
        SupConLoss()(labels, features, sample_weight=np.ones(4, dtype="float32"))


# ----------------------------------------------------------------------------------------------
# Keras wrappers


def call_wrapper(loss, features, labels):
    return evaluate(lambda f, y: loss(y, f), features, labels)


def test_wrappers_equal_functions():
    features, labels = random_case(53, 8, 2, 8, "repeated")
    np.testing.assert_allclose(
        call_wrapper(SupConLoss(0.2, 0.07), features, labels),
        evaluate(supcon_loss, features, labels, temperature=0.2, base_temperature=0.07),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        call_wrapper(SimCLRLoss(), features, labels), evaluate(supcon_loss, features), rtol=1e-6
    )
    one_view, labels = random_case(53, 16, 1, 4, "repeated")
    np.testing.assert_allclose(
        call_wrapper(NPairsLoss(), one_view, labels),
        evaluate(npairs_loss, one_view, labels),
        rtol=1e-6,
    )


def test_wrapper_runs_eagerly():
    features, labels = random_case(53, 2, 2, 3, "repeated")
    loss = SupConLoss()(labels, features)
    np.testing.assert_allclose(as_float(loss), reference_supcon(features, labels), rtol=1e-5)
    assert as_float(SimCLRLoss()(None, features)) == pytest.approx(reference_supcon(features))


def test_large_labels_survive_the_wrapper():
    # Keras' default Loss.__call__ casts labels to the loss dtype; 256 and 257 collide in
    # bfloat16, so a bfloat16 wrapper must still see them as two classes.
    features, _ = random_case(59, 2, 1, 3, "none")
    labels = np.array([256, 257])
    assert call_wrapper(SupConLoss(dtype="bfloat16"), features, labels) == 0.0


@pytest.mark.parametrize(
    ("loss", "expected_config"),
    [
        (
            SupConLoss(0.2, 0.07, name="con"),
            {"temperature": 0.2, "base_temperature": 0.07, "supervised": True, "name": "con"},
        ),
        (SimCLRLoss(0.5), {"temperature": 0.5, "base_temperature": None, "name": "simclr_loss"}),
        (NPairsLoss(), {"temperature": 0.05, "base_temperature": None, "name": "npairs_loss"}),
    ],
)
def test_config_round_trip(loss, expected_config):
    config = loss.get_config()
    assert expected_config.items() <= config.items()
    assert "supervised" not in config or isinstance(loss, SupConLoss)
    rebuilt = type(loss).from_config(config)
    assert type(rebuilt) is type(loss)
    assert rebuilt.get_config() == config
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(revived) is type(loss)
    assert revived.get_config() == config
    registered = keras.saving.get_registered_name(type(loss))
    assert registered == f"contrastive>{type(loss).__name__}"


@pytest.mark.parametrize(
    ("method", "expected_class"),
    [("supcon", SupConLoss), ("simclr", SimCLRLoss), ("npairs", NPairsLoss)],
)
def test_get_loss(method, expected_class):
    loss = get_loss(method, 0.3, base_temperature=0.07)
    assert type(loss) is expected_class
    assert (loss.temperature, loss.base_temperature) == (0.3, 0.07)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "views"), [("supcon", 2), ("simclr", 2), ("npairs", 1)])
def test_wrappers_train_inside_compiled_model(method, views):
    rng = np.random.default_rng(61)
    x = rng.normal(size=(16, views, 5)).astype("float32")
    y = rng.integers(0, 3, size=16)
    inputs = keras.Input((views, 5))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    loss = get_loss(method, 0.1)
    model.compile(optimizer="sgd", loss=loss)
    # Eager compute_loss on two images; the [2, views, 3] output shape is shared with the
    # other eager tests.
    y_pred = model(x[:2])
    computed = as_float(model.compute_loss(x=x[:2], y=y[:2], y_pred=y_pred))
    np.testing.assert_allclose(computed, as_float(loss.call(y[:2], y_pred)), rtol=1e-6)
    # fit() traces compute_loss with an unknown batch size (tf.function / jax.jit).
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert all(math.isfinite(value) for value in history.history["loss"])


def test_module_does_not_import_tensorflow():
    tree = ast.parse(Path(losses.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert "keras" in imported
    assert not any(name.split(".")[0] == "tensorflow" for name in imported)
