"""Augmentation layers: shapes, ranges, identity at inference, seeding, jit, preview."""

import math

import keras
import numpy as np
import pytest

from contrastive.augment import (
    STRONG,
    WEAK,
    RandomColorAffine,
    RandomGrayscale,
    RandomResizedCrop,
    build_augmenter,
    render_preview,
)

pytestmark = pytest.mark.backend

SHAPES = [(28, 28, 1), (32, 32, 3), (24, 40, 3)]


def smooth_images(shape, count=16, seed=0):
    """Random smooth patterns in [0, 1], float32 [count, H, W, C]."""
    rng = np.random.default_rng(seed)
    height, width, channels = shape
    rows = np.linspace(0.0, 1.0, height)[None, :, None, None]
    columns = np.linspace(0.0, 1.0, width)[None, None, :, None]
    frequency = rng.uniform(1.0, 4.0, size=(count, 1, 1, channels))
    phase = rng.uniform(0.0, 2 * np.pi, size=(count, 1, 1, channels))
    pattern = np.sin(2 * np.pi * frequency * (rows + 0.7 * columns) + phase)
    return (0.5 + 0.45 * pattern).astype("float32")


def numpy(tensor):
    return keras.ops.convert_to_numpy(tensor)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("strength", [STRONG, WEAK], ids=["strong", "weak"])
def test_augmenter_keeps_shape_and_range(shape, strength):
    images = smooth_images(shape)
    augmenter = build_augmenter(shape, **strength, seed=0)

    views = numpy(augmenter(images, training=True))

    assert views.shape == images.shape
    assert views.dtype == np.float32
    assert views.min() >= 0.0 and views.max() <= 1.0
    assert not np.allclose(views, images)


@pytest.mark.parametrize("shape", SHAPES)
def test_augmenter_is_identity_at_inference(shape):
    images = smooth_images(shape)
    augmenter = build_augmenter(shape, **STRONG, seed=0)

    np.testing.assert_array_equal(numpy(augmenter(images, training=False)), images)


@pytest.mark.parametrize(
    "layer",
    [
        RandomResizedCrop(min_area=0.25, rotation=0.1, seed=0),
        RandomColorAffine(brightness=0.6, jitter=0.2, seed=0),
        RandomGrayscale(probability=1.0, seed=0),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_custom_layers_are_identity_at_inference(layer):
    images = smooth_images((32, 32, 3))

    np.testing.assert_array_equal(numpy(layer(images, training=False)), images)


def test_augmenter_without_any_stage_is_identity_even_when_training():
    images = smooth_images((28, 28, 1))
    augmenter = build_augmenter(
        (28, 28, 1), min_area=1.0, brightness=0.0, jitter=0.0, flip=False, grayscale=0.5
    )

    assert [type(layer) for layer in augmenter.layers] == [keras.layers.Identity]
    np.testing.assert_array_equal(numpy(augmenter(images, training=True)), images)


def test_same_seed_gives_same_views_and_other_seed_differs():
    images = smooth_images((32, 32, 3))

    first = numpy(build_augmenter((32, 32, 3), **STRONG, seed=7)(images, training=True))
    second = numpy(build_augmenter((32, 32, 3), **STRONG, seed=7)(images, training=True))
    other = numpy(build_augmenter((32, 32, 3), **STRONG, seed=8)(images, training=True))

    np.testing.assert_array_equal(first, second)
    assert np.abs(first - other).mean() > 0.05


def test_repeated_calls_give_different_views():
    # Two contrastive views of one batch come from two calls of the same augmenter.
    images = smooth_images((32, 32, 3))
    augmenter = build_augmenter((32, 32, 3), **STRONG, seed=0)

    first = numpy(augmenter(images, training=True))
    second = numpy(augmenter(images, training=True))

    assert np.abs(first - second).mean() > 0.05


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_strong_changes_images_more_than_weak(shape):
    # Both strengths flip alike; leave flips out so the difference is crop and colour.
    images = smooth_images(shape)
    weak = build_augmenter(shape, **{**WEAK, "flip": False}, seed=1)
    strong = build_augmenter(shape, **{**STRONG, "flip": False}, seed=1)
    weak = numpy(weak(images, training=True))
    strong = numpy(strong(images, training=True))

    weak_change = np.abs(weak - images).mean()
    strong_change = np.abs(strong - images).mean()

    assert strong_change > 1.3 * weak_change > 0.0


def test_grayscale_with_probability_one_makes_equal_channels():
    images = smooth_images((32, 32, 3))

    gray = numpy(RandomGrayscale(probability=1.0, seed=0)(images, training=True))

    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    luma = images @ np.array([0.2989, 0.5870, 0.1140], dtype="float32")
    np.testing.assert_allclose(gray[..., 0], luma, atol=1e-6)


def test_grayscale_with_probability_zero_and_one_channel_is_identity():
    rgb = smooth_images((32, 32, 3))
    mono = smooth_images((28, 28, 1))

    np.testing.assert_array_equal(numpy(RandomGrayscale(0.0, seed=0)(rgb, training=True)), rgb)
    np.testing.assert_array_equal(numpy(RandomGrayscale(1.0, seed=0)(mono, training=True)), mono)


def test_color_affine_on_one_channel_keeps_one_channel_and_range():
    images = smooth_images((28, 28, 1))

    out = numpy(RandomColorAffine(brightness=0.6, jitter=0.2, seed=0)(images, training=True))

    assert out.shape == images.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - images).mean() > 0.01


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_color_affine_without_strength_is_identity(shape):
    images = smooth_images(shape)

    out = numpy(RandomColorAffine(brightness=0.0, jitter=0.0, seed=0)(images, training=True))

    np.testing.assert_allclose(out, images, atol=1e-6)


def test_color_affine_mixes_rgb_channels():
    # A pure red image picks up green and blue only through the jitter matrix.
    red = np.zeros((16, 32, 32, 3), dtype="float32")
    red[..., 0] = 0.5

    brightness_only = numpy(RandomColorAffine(0.5, 0.0, seed=0)(red, training=True))
    jittered = numpy(RandomColorAffine(0.0, 0.2, seed=0)(red, training=True))

    assert brightness_only[..., 1:].max() == 0.0
    assert jittered[..., 1:].max() > 0.0


def test_resized_crop_with_full_area_and_no_rotation_is_identity():
    images = smooth_images((24, 40, 3))

    out = numpy(RandomResizedCrop(min_area=1.0, seed=0)(images, training=True))

    np.testing.assert_array_equal(out, images)


def test_resized_crop_area_is_within_bounds():
    # On linear ramps the output slope along an axis is the crop's extent along that axis.
    height, width = 24, 40
    ramp_x = np.tile(np.linspace(0.0, 1.0, width, dtype="float32"), (height, 1))
    ramp_y = np.tile(np.linspace(0.0, 1.0, height, dtype="float32")[:, None], (1, width))
    images = np.repeat(np.stack([ramp_x, ramp_y, ramp_x], axis=-1)[None], 16, axis=0)

    out = numpy(RandomResizedCrop(min_area=0.25, seed=3)(images, training=True))

    crop_width = np.diff(out[..., 0], axis=2).mean(axis=(1, 2)) * (width - 1)
    crop_height = np.diff(out[..., 1], axis=1).mean(axis=(1, 2)) * (height - 1)
    area = crop_width * crop_height
    assert area.min() >= 0.25 - 1e-4 and area.max() <= 1.0 + 1e-4
    assert area.max() - area.min() > 0.2
    assert (crop_width / crop_height).min() >= 3 / 4 - 1e-4
    assert (crop_width / crop_height).max() <= 4 / 3 + 1e-4


def test_resized_crop_rotates_by_at_most_rotation():
    # A horizontal ramp rotated by theta has gradient direction theta.
    ramp = np.tile(np.linspace(0.0, 1.0, 32, dtype="float32"), (32, 1))[None, :, :, None]
    images = np.repeat(ramp, 16, axis=0)

    out = numpy(RandomResizedCrop(min_area=1.0, rotation=0.05, seed=0)(images, training=True))

    centre = out[:, 12:20, 12:20, 0]
    angle = np.arctan2(np.diff(centre, axis=1).mean((1, 2)), np.diff(centre, axis=2).mean((1, 2)))
    largest = 2 * math.pi * 0.05
    assert np.abs(angle).max() <= largest + 0.02
    assert np.abs(angle).max() > largest / 2


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: RandomResizedCrop(min_area=0.0), "min_area=0.0"),
        (lambda: RandomResizedCrop(aspect_ratio=(2.0, 1.0)), "aspect_ratio=(2.0, 1.0)"),
        (lambda: RandomResizedCrop(rotation=-0.1), "rotation=-0.1"),
        (lambda: RandomColorAffine(brightness=1.5), "brightness=1.5"),
        (lambda: RandomColorAffine(jitter=-0.2), "jitter=-0.2"),
        (lambda: RandomGrayscale(probability=2.0), "probability=2.0"),
        (lambda: RandomGrayscale(seed="a"), "seed='a'"),
        (lambda: build_augmenter((32, 32, 4), **WEAK), "(32, 32, 4)"),
        (lambda: build_augmenter((32, 32), **WEAK), "(32, 32)"),
        (lambda: build_augmenter((32, 32, 3), **{**STRONG, "grayscale": 1.5}), "grayscale=1.5"),
    ],
)
def test_bad_arguments_raise_value_error_echoing_the_value(factory, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        factory()


@pytest.mark.parametrize(
    "layer",
    [
        RandomResizedCrop(min_area=0.3, aspect_ratio=(0.5, 2.0), rotation=0.05, seed=4),
        RandomColorAffine(brightness=0.4, jitter=0.3, seed=5),
        RandomGrayscale(probability=0.5, seed=6),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_custom_layer_config_round_trip(layer):
    images = smooth_images((32, 32, 3))
    restored = type(layer).from_config(layer.get_config())

    assert restored.get_config() == layer.get_config()
    np.testing.assert_array_equal(
        numpy(restored(images, training=True)), numpy(layer(images, training=True))
    )


def test_augmenter_config_round_trip():
    images = smooth_images((28, 28, 1))
    augmenter = build_augmenter((28, 28, 1), **STRONG, seed=2)
    restored = keras.Sequential.from_config(augmenter.get_config())

    assert [type(layer) for layer in restored.layers] == [
        keras.layers.RandomFlip,
        RandomResizedCrop,
        RandomColorAffine,
    ]
    np.testing.assert_array_equal(
        numpy(restored(images, training=True)), numpy(augmenter(images, training=True))
    )


def read_png(path):
    """Returns (width, height) of a PNG after checking its signature."""
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    try:
        from PIL import Image
    except ImportError:
        import matplotlib.image

        height, width = matplotlib.image.imread(path).shape[:2]
        return width, height
    with Image.open(path) as image:
        return image.size


@pytest.mark.parametrize(("shape", "count", "columns"), [((28, 28, 1), 5, 5), ((32, 32, 3), 3, 8)])
def test_render_preview_writes_png_grid(tmp_path, shape, count, columns):
    images = (smooth_images(shape, count=count) * 255).astype("uint8")
    weak = build_augmenter(shape, **WEAK, seed=0)
    strong = build_augmenter(shape, **STRONG, seed=1)
    path = tmp_path / "preview" / "augmentations.png"

    written = render_preview(images, weak, strong, path, num_images=columns)

    assert written == str(path)
    # 1.5-inch cells at 100 dpi: 4 rows, min(count, columns) columns.
    assert read_png(written) == (150 * min(count, columns), 600)


def test_render_preview_rejects_bad_images(tmp_path):
    weak = build_augmenter((32, 32, 3), **WEAK)
    with pytest.raises(ValueError, match=r"images.shape=\(32, 32, 3\)"):
        render_preview(np.zeros((32, 32, 3), "uint8"), weak, weak, tmp_path / "x.png")


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_augmenter_trains_inside_a_jit_compiled_step(shape):
    augmenter = build_augmenter(shape, **STRONG, seed=0)
    inputs = keras.Input(shape=shape)
    logits = keras.layers.Dense(2)(keras.layers.Flatten()(augmenter(inputs)))
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    images = smooth_images(shape)
    labels = np.arange(16) % 2

    history = model.fit(images, labels, batch_size=16, epochs=1, verbose=0)

    # Keras silently falls back to eager steps when a layer has supports_jit=False.
    assert model.jit_compile is True
    assert np.isfinite(history.history["loss"][0])
