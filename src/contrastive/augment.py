"""Image augmentation as Keras layers that live inside the model.

Augmenters take float images in `[0, 1]`, shape `[batch, height, width, channels]` with 1 or 3
channels (channels last), and return the same shape and range. Every layer is the identity
when called with `training=False`, draws its randomness from a `keras.random.SeedGenerator`
(two layers built with the same seed give the same output on the same batch), and uses
`keras.ops` only, so it runs inside a jitted JAX train step and inside an XLA-compiled
`tf.function` alike.

Two strengths follow the SimCLR keras-io example (Beres, 2021): `STRONG` views for
contrastive pretraining and `WEAK` views for training a classifier.

    augmenter = build_augmenter((32, 32, 3), **STRONG, seed=0)
    views = augmenter(images, training=True)  # [B, 32, 32, 3]
"""

import dataclasses
import math
import os

import keras
from keras import ops

from contrastive import validation
from contrastive.config import AugmentConfig

# The two strengths' values live in `config.AugmentConfig` (the one home of the defaults);
# these dicts are its `build_augmenter` keyword arguments.
STRONG = dataclasses.asdict(AugmentConfig().strong)
WEAK = dataclasses.asdict(AugmentConfig().weak)

# ITU-R BT.601 luma weights, as in `keras.ops.image.rgb_to_grayscale`.
_LUMA_WEIGHTS = (0.2989, 0.5870, 0.1140)


def _check_channels(layer_name, input_shape):
    channels = input_shape[-1]
    if channels not in (1, 3):
        raise ValueError(
            f"{layer_name} expects channels-last images with 1 or 3 channels. "
            f"Received: input_shape={tuple(input_shape)}"
        )


def _bilinear_sample(images, source_x, source_y):
    """Samples `images` at fractional pixel coordinates with bilinear interpolation.

    Points outside the image take the value of the nearest edge pixel. Written with a gather
    rather than `keras.ops.image.affine_transform`, whose TensorFlow kernel has no XLA
    implementation (Keras marks its own geometric layers `supports_jit=False`, which turns
    off compilation of the whole train step on every backend).

    Args:
        images: float `[B, H, W, C]`.
        source_x: float `[B, H * W]`, column coordinate (in pixels) to read for each output
            pixel in row-major order.
        source_y: float `[B, H * W]`, row coordinate.

    Returns:
        float `[B, H, W, C]`.
    """
    _, height, width, channels = images.shape
    flat = ops.reshape(images, (-1, height * width, channels))

    x_floor = ops.floor(source_x)
    y_floor = ops.floor(source_y)
    weight_x = ops.expand_dims(source_x - x_floor, -1)
    weight_y = ops.expand_dims(source_y - y_floor, -1)
    x0 = ops.clip(ops.cast(x_floor, "int32"), 0, width - 1)
    x1 = ops.clip(ops.cast(x_floor, "int32") + 1, 0, width - 1)
    y0 = ops.clip(ops.cast(y_floor, "int32"), 0, height - 1)
    y1 = ops.clip(ops.cast(y_floor, "int32") + 1, 0, height - 1)

    def gather(rows, columns):
        index = ops.expand_dims(rows * width + columns, -1)
        index = ops.repeat(index, channels, axis=-1)
        return ops.take_along_axis(flat, index, axis=1)

    top = gather(y0, x0) * (1.0 - weight_x) + gather(y0, x1) * weight_x
    bottom = gather(y1, x0) * (1.0 - weight_x) + gather(y1, x1) * weight_x
    sampled = top * (1.0 - weight_y) + bottom * weight_y
    return ops.reshape(sampled, (-1, height, width, channels))


@keras.saving.register_keras_serializable(package="contrastive")
class RandomResizedCrop(keras.layers.Layer):
    """Crops a random box of at least `min_area` of each image and resizes it back.

    Per image: the crop area `s ~ U(min_area, 1)` (fraction of the image), the log aspect
    ratio `log r ~ U(log aspect_ratio[0], log aspect_ratio[1])` clipped to `[log s, -log s]`
    so the box always fits (its area is exactly `s`), a centre uniform over the positions
    where the box fits, and optionally a rotation `theta ~ U(-rotation, rotation)` turns
    about the box centre. Crop, resize and rotation are one affine map sampled once with
    bilinear interpolation; points outside the image repeat the edge pixel. With
    `min_area=1` and `rotation=0` the layer is the identity.

    Args:
        min_area: smallest crop area as a fraction of the image, in `(0, 1]`.
        aspect_ratio: `(low, high)` range of the crop's width/height ratio relative to the
            image's own ratio. Defaults to `(3/4, 4/3)`.
        rotation: largest rotation as a fraction of a full turn, in `[0, 0.5]` (0.02 turns
            is 7.2 degrees, the same unit as `keras.layers.RandomRotation`).
        seed: int or None.

    Call args:
        images: float `[B, H, W, C]` in `[0, 1]`.
        training: apply the augmentation when True, else return `images` unchanged.

    Returns:
        float `[B, H, W, C]` in `[0, 1]`.
    """

    def __init__(
        self, min_area=0.25, aspect_ratio=(3 / 4, 4 / 3), rotation=0.0, seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        if not 0.0 < min_area <= 1.0:
            raise ValueError(f"min_area must be in (0, 1]. Received: min_area={min_area}")
        if len(aspect_ratio) != 2 or not 0.0 < aspect_ratio[0] <= aspect_ratio[1]:
            raise ValueError(
                "aspect_ratio must be (low, high) with 0 < low <= high. "
                f"Received: aspect_ratio={aspect_ratio}"
            )
        if not 0.0 <= rotation <= 0.5:
            raise ValueError(f"rotation must be in [0, 0.5]. Received: rotation={rotation}")
        validation.check_seed(seed)
        self.min_area = float(min_area)
        self.aspect_ratio = (float(aspect_ratio[0]), float(aspect_ratio[1]))
        self.rotation = float(rotation)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        images = ops.cast(images, "float32")
        _, height, width, _ = images.shape
        batch_size = ops.shape(images)[0]

        area = keras.random.uniform((batch_size,), self.min_area, 1.0, seed=self.seed_generator)
        log_ratio = keras.random.uniform(
            (batch_size,),
            math.log(self.aspect_ratio[0]),
            math.log(self.aspect_ratio[1]),
            seed=self.seed_generator,
        )
        log_area = ops.log(area)
        log_ratio = ops.clip(log_ratio, log_area, -log_area)
        crop_width = ops.sqrt(area * ops.exp(log_ratio))  # fractions of the image side
        crop_height = ops.sqrt(area * ops.exp(-log_ratio))
        centre_x = crop_width / 2 + (1.0 - crop_width) * keras.random.uniform(
            (batch_size,), seed=self.seed_generator
        )
        centre_y = crop_height / 2 + (1.0 - crop_height) * keras.random.uniform(
            (batch_size,), seed=self.seed_generator
        )
        angle = (2.0 * math.pi * self.rotation) * keras.random.uniform(
            (batch_size,), -1.0, 1.0, seed=self.seed_generator
        )

        # Output pixel (x, y) has its centre at (x + 0.5, y + 0.5). Its offset from the
        # output centre, scaled to the crop and rotated, is added to the crop centre; the
        # result, minus 0.5, is the input pixel coordinate to read.
        rows, columns = ops.meshgrid(
            ops.arange(height, dtype="float32"),
            ops.arange(width, dtype="float32"),
            indexing="ij",
        )
        offset_x = ops.reshape(columns, (1, -1)) + (0.5 - width / 2)  # [1, H*W]
        offset_y = ops.reshape(rows, (1, -1)) + (0.5 - height / 2)
        scaled_x = ops.expand_dims(crop_width, -1) * offset_x  # [B, H*W]
        scaled_y = ops.expand_dims(crop_height, -1) * offset_y
        cos = ops.expand_dims(ops.cos(angle), -1)
        sin = ops.expand_dims(ops.sin(angle), -1)
        source_x = ops.expand_dims(centre_x * width, -1) - 0.5 + cos * scaled_x - sin * scaled_y
        source_y = ops.expand_dims(centre_y * height, -1) - 0.5 + sin * scaled_x + cos * scaled_y
        cropped = _bilinear_sample(images, source_x, source_y)
        return ops.cast(ops.clip(cropped, 0.0, 1.0), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "min_area": self.min_area,
                "aspect_ratio": list(self.aspect_ratio),
                "rotation": self.rotation,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="contrastive")
class RandomColorAffine(keras.layers.Layer):
    """Random per-image affine map of the colour values (the SimCLR example's colour jitter).

    RGB: `out = clip(x @ (b * I + J), 0, 1)` per image, with brightness `b ~ U(1 - brightness,
    1 + brightness)` shared by all channels and a channel-mixing jitter matrix
    `J ~ U(-jitter, jitter)^(3x3)`.
    One channel: channel mixing means nothing, so `jitter` becomes a contrast factor
    `c ~ U(1 - jitter, 1 + jitter)` about the image mean `m`:
    `out = clip(b * (m + c * (x - m)), 0, 1)`, a per-image scale and offset.

    Args:
        brightness: brightness range, in `[0, 1]`.
        jitter: channel-mixing (RGB) or contrast (grayscale) range, `>= 0`.
        seed: int or None.

    Call args:
        images: float `[B, H, W, C]`, `C` in {1, 3}, values in `[0, 1]`.
        training: apply the augmentation when True, else return `images` unchanged.

    Returns:
        float `[B, H, W, C]` in `[0, 1]`.
    """

    def __init__(self, brightness=0.0, jitter=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= brightness <= 1.0:
            raise ValueError(f"brightness must be in [0, 1]. Received: brightness={brightness}")
        if jitter < 0.0:
            raise ValueError(f"jitter must be >= 0. Received: jitter={jitter}")
        validation.check_seed(seed)
        self.brightness = float(brightness)
        self.jitter = float(jitter)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        _check_channels("RandomColorAffine", input_shape)

    def call(self, images, training=True):
        if not training:
            return images
        images = ops.cast(images, "float32")
        channels = images.shape[-1]
        batch_size = ops.shape(images)[0]
        scale = keras.random.uniform(
            (batch_size, 1, 1, 1),
            1.0 - self.brightness,
            1.0 + self.brightness,
            seed=self.seed_generator,
        )
        if channels == 1:
            contrast = keras.random.uniform(
                (batch_size, 1, 1, 1),
                1.0 - self.jitter,
                1.0 + self.jitter,
                seed=self.seed_generator,
            )
            mean = ops.mean(images, axis=(1, 2, 3), keepdims=True)
            transformed = scale * (mean + contrast * (images - mean))
        else:
            jitter = keras.random.uniform(
                (batch_size, channels, channels),
                -self.jitter,
                self.jitter,
                seed=self.seed_generator,
            )
            matrices = ops.eye(channels, dtype="float32") * ops.reshape(scale, (-1, 1, 1))
            transformed = ops.einsum("bhwc,bcd->bhwd", images, matrices + jitter)
        return ops.cast(ops.clip(transformed, 0.0, 1.0), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"brightness": self.brightness, "jitter": self.jitter, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="contrastive")
class RandomGrayscale(keras.layers.Layer):
    """Replaces each RGB image by its luma, repeated on 3 channels, with `probability`.

    One-channel images are already gray: the layer returns them unchanged.

    Args:
        probability: chance that an image is converted, in `[0, 1]`.
        seed: int or None.

    Call args:
        images: float `[B, H, W, C]`, `C` in {1, 3}.
        training: apply the augmentation when True, else return `images` unchanged.

    Returns:
        float `[B, H, W, C]`; converted images have three equal channels.
    """

    def __init__(self, probability=0.2, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1]. Received: probability={probability}")
        validation.check_seed(seed)
        self.probability = float(probability)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        _check_channels("RandomGrayscale", input_shape)

    def call(self, images, training=True):
        if not training or images.shape[-1] == 1:
            return images
        images = ops.cast(images, "float32")
        batch_size = ops.shape(images)[0]
        weights = ops.convert_to_tensor(_LUMA_WEIGHTS, dtype="float32")
        luma = ops.sum(images * weights, axis=-1, keepdims=True)
        gray = ops.broadcast_to(luma, ops.shape(images))
        draw = keras.random.uniform((batch_size, 1, 1, 1), seed=self.seed_generator)
        converted = ops.where(draw < self.probability, gray, images)
        return ops.cast(converted, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"probability": self.probability, "seed": self.seed})
        return config


def build_augmenter(
    image_shape,
    *,
    min_area,
    brightness,
    jitter,
    rotation=0.0,
    flip=True,
    grayscale=0.0,
    seed=None,
    name="augmenter",
):
    """Builds the augmentation pipeline: flip, crop + rotation, colour affine, grayscale.

    Stages that would do nothing (`min_area=1` and `rotation=0`, `brightness=jitter=0`,
    `grayscale=0` or a 1-channel image) are left out. With `seed` set, stage `i` gets seed
    `seed + i`, so two augmenters built with the same arguments produce the same views.

    Args:
        image_shape: `(height, width, channels)`, channels 1 or 3.
        min_area: smallest random crop area as a fraction of the image, in `(0, 1]`.
        brightness: colour affine brightness range, in `[0, 1]`.
        jitter: colour affine channel-mixing (RGB) or contrast (1 channel) range.
        rotation: largest rotation as a fraction of a full turn.
        flip: random horizontal flips.
        grayscale: probability of converting an RGB image to grayscale.
        seed: int or None.
        name: model name.

    Returns:
        `keras.Sequential` mapping float `[B, H, W, C]` in `[0, 1]` to the same shape and
        range; the identity with `training=False`.
    """
    if len(image_shape) != 3 or not all(
        validation.is_int(size) and size > 0 for size in image_shape
    ):
        raise ValueError(
            "image_shape must be (height, width, channels) of positive ints. "
            f"Received: image_shape={tuple(image_shape)}"
        )
    _check_channels("build_augmenter", image_shape)
    if not 0.0 <= grayscale <= 1.0:
        raise ValueError(f"grayscale must be in [0, 1]. Received: grayscale={grayscale}")
    validation.check_seed(seed)

    def stage_seed():
        # Distinct per stage so stages draw independent numbers; fixed by `seed`.
        return None if seed is None else seed + len(layers)

    layers = []
    if flip:
        layers.append(
            keras.layers.RandomFlip(
                "horizontal", seed=stage_seed(), data_format="channels_last", name="flip"
            )
        )
    if min_area < 1.0 or rotation > 0.0:
        layers.append(
            RandomResizedCrop(
                min_area=min_area, rotation=rotation, seed=stage_seed(), name="resized_crop"
            )
        )
    if brightness > 0.0 or jitter > 0.0:
        layers.append(
            RandomColorAffine(
                brightness=brightness, jitter=jitter, seed=stage_seed(), name="color_affine"
            )
        )
    if grayscale > 0.0 and image_shape[-1] == 3:
        layers.append(RandomGrayscale(grayscale, seed=stage_seed(), name="grayscale"))
    if not layers:
        layers = [keras.layers.Identity(name="identity")]
    image_shape = tuple(int(size) for size in image_shape)
    return keras.Sequential([keras.Input(shape=image_shape), *layers], name=name)


def render_preview(images, weak, strong, path, num_images=8):
    """Renders original, weak and two strong views of some images as a PNG grid.

    Rows: original / weak / strong / strong; one column per image. Each cell is 1.5 inches
    at 100 dpi, so the PNG is `150 * min(num_images, N)` pixels wide and 600 pixels high.

    Args:
        images: `uint8` `[N, H, W, C]` in `[0, 255]`, `C` in {1, 3}.
        weak: augmenter layer (e.g. from `build_augmenter(..., **WEAK)`).
        strong: augmenter layer for contrastive views.
        path: output PNG path; parent directories are created.
        num_images: columns to render (at most `N`).

    Returns:
        `path` as a string.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(images.shape) != 4 or images.shape[-1] not in (1, 3) or images.shape[0] < 1:
        raise ValueError(
            "images must be [N, H, W, C] with N >= 1 and C in {1, 3}. "
            f"Received: images.shape={tuple(images.shape)}"
        )
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1. Received: num_images={num_images}")
    count = min(num_images, images.shape[0])
    originals = ops.cast(ops.convert_to_tensor(images[:count]), "float32") / 255.0
    rows = {
        "original": originals,
        "weak": weak(originals, training=True),
        "strong": strong(originals, training=True),
        "strong (2nd view)": strong(originals, training=True),
    }

    cell_inches = 1.5
    figure = Figure(figsize=(cell_inches * count, cell_inches * len(rows)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), count, squeeze=False)
    for row, (title, batch) in enumerate(rows.items()):
        batch = ops.convert_to_numpy(ops.clip(batch, 0.0, 1.0))
        for column in range(count):
            axis = axes[row][column]
            if batch.shape[-1] == 1:
                axis.imshow(batch[column, :, :, 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axis.imshow(batch[column])
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(title, fontsize=8)
    figure.subplots_adjust(left=0.08, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    figure.savefig(path, format="png")
    return path
