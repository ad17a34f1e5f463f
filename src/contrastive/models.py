"""Encoders (by name) and the projection and classification heads put on top of them.

An encoder maps float images in `[0, 1]`, shape `[batch, height, width, channels]`, to pooled
features `[batch, feature_dim]`; its `output_shape[-1]` is the feature dimension. All models
are functional Keras models built from stock layers, so they save to `.keras` and reload
without custom objects.

    encoder = build_encoder("resnet18", (32, 32, 3), seed=0)   # -> [B, 512]
    head = build_projection_head("mlp", encoder.output_shape[-1])  # -> [B, 128]

| name         | origin                                   | `width` means        | features  |
|--------------|------------------------------------------|----------------------|-----------|
| `small_cnn`  | SupCon keras-io example (small CNN)      | last Dense units     | width=128 |
| `simclr_cnn` | SimCLR keras-io example (stride-2 convs) | filters, Dense units | width=128 |
| `resnet18`   | CIFAR ResNet-18 (He et al., 2016)        | stage-1 channels     | 8*width   |
| `resnet50v2` | `keras.applications.ResNet50V2`          | fixed (must be None) | 2048      |

`resnet18` gives 512 features at its default width 64.
"""

import copy
import itertools

import keras
from keras import layers, ops

from contrastive import validation
from contrastive.config import CLASSIFIER_HEADS, PROJECTION_HEADS

ENCODERS = {}
"""Encoder builders by name: `builder(input_shape, width) -> keras.Model`. The built-in names
are `contrastive.config.ENCODER_NAMES` (tests/unit/test_registries.py checks they agree)."""


def register_encoder(name):
    """Decorator adding `builder(input_shape, width) -> keras.Model` to `ENCODERS` as `name`.

    `width` is None for the builder's default. Raises ValueError if `name` is taken.
    """

    def register(builder):
        if name in ENCODERS:
            raise ValueError(f"An encoder is already registered as name={name!r}")
        ENCODERS[name] = builder
        return builder

    return register


def find_encoder(model):
    """The encoder inside a classifier.

    Args:
        model: a classifier: a frozen wrapper holding the encoder (its `encoder` attribute),
            or a functional model with the encoder nested under its registered name.

    Returns:
        The encoder `keras.Model` (images -> features).
    """
    for layer in model.layers:
        inner = getattr(layer, "encoder", None)  # training.FrozenEncoder wraps it
        if isinstance(inner, keras.Model):
            return inner
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name in ENCODERS:
            return layer
    raise ValueError(
        f"model {model.name!r} has no encoder sub-model (expected one of {sorted(ENCODERS)})"
    )


def build_encoder(name, input_shape, *, width=None, seed=None):
    """Builds the encoder registered as `name` for images of `input_shape`.

    Args:
        name: a key of `ENCODERS`: `small_cnn`, `simclr_cnn`, `resnet18`, `resnet50v2`.
        input_shape: `(height, width, channels)` of the data.
        width: size knob of the encoder (see the module table), None for its default.
        seed: int seeding every random weight initializer (in layer order from `seed`), so
            two encoders built with the same seed have equal weights; None for random.

    Returns:
        `keras.Model` named `name`, float `[B, H, W, C]` in `[0, 1]` -> `[B, feature_dim]`.
    """
    if name not in ENCODERS:
        raise ValueError(f"Unknown encoder name={name!r}. Known encoders: {sorted(ENCODERS)}")
    if len(input_shape) != 3 or not all(
        validation.is_int(size) and size >= 1 for size in input_shape
    ):
        raise ValueError(
            "input_shape must be (height, width, channels) of positive ints. "
            f"Received: input_shape={tuple(input_shape)}"
        )
    if width is not None:
        validation.check_int("width", width)
    validation.check_seed(seed)
    encoder = ENCODERS[name](tuple(int(size) for size in input_shape), width)
    if seed is not None:
        encoder = _reseed(encoder, seed)
    return encoder


def _reseed(model, seed):
    """Rebuilds `model` with every random initializer and random layer seeded from `seed`.

    Layers are cloned in order and each seedable setting gets the next integer, so equal
    seeds give equal weights (and dropout masks). One mechanism for all models, including
    `keras.applications` ones whose initializers cannot be passed in.
    """
    seeds = itertools.count(seed)

    def clone_layer(layer):
        config = copy.deepcopy(layer.get_config())
        if "seed" in config:
            config["seed"] = next(seeds)
        for key, value in config.items():
            if (
                key.endswith("_initializer")
                and isinstance(value, dict)
                and "seed" in value.get("config", {})
            ):
                value["config"]["seed"] = next(seeds)
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone_layer)


@register_encoder("small_cnn")
def _small_cnn(input_shape, width):
    """SupCon keras-io example's encoder: two conv/max-pool blocks, then a linear Dense.

    Conv(32, 3x3, relu) -> MaxPool(2) -> Conv(64, 3x3, relu) -> MaxPool(2) -> Flatten ->
    Dense(width=128). As in the example the last Dense has no activation and there is no
    dropout (the classifier head has it). Needs inputs of at least 10x10.
    """
    if min(input_shape[:2]) < 10:
        raise ValueError(f"small_cnn needs images of at least 10x10. Received: {input_shape=}")
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(width or 128)(x)
    return keras.Model(inputs, outputs, name="small_cnn")


@register_encoder("simclr_cnn")
def _simclr_cnn(input_shape, width):
    """SimCLR keras-io example's encoder: 4 x Conv(width, 3x3, stride 2, relu) -> Flatten ->
    Dense(width, relu), width 128 by default.

    Each conv uses "valid" padding like the example unless that would leave no pixel; then
    it uses "same". 96x96 (STL-10) and 32x32 inputs get the example's exact network
    (32 -> 15 -> 7 -> 3 -> 1); 28x28 goes 13 -> 6 -> 2 -> 1, its last conv padded.
    """
    width = width or 128
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for _ in range(4):
        # A valid 3x3 stride-2 conv leaves (size - 3) // 2 + 1 pixels.
        valid = min(x.shape[1], x.shape[2]) >= 3
        padding = "valid" if valid else "same"
        x = layers.Conv2D(width, 3, strides=2, padding=padding, activation="relu")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, outputs, name="simclr_cnn")


def _basic_block(x, filters, strides, name):
    """ResNet v1 basic block: (3x3 conv, BN, ReLU, 3x3 conv, BN) + shortcut, then ReLU.

    The shortcut is a 1x1 strided conv + BN when the shape changes, else the identity.
    """
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(
            filters,
            1,
            strides=strides,
            use_bias=False,
            kernel_initializer="he_uniform",
            name=f"{name}_shortcut_conv",
        )(x)
        shortcut = layers.BatchNormalization(name=f"{name}_shortcut_bn")(shortcut)
    x = layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_uniform",
        name=f"{name}_conv1",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="he_uniform",
        name=f"{name}_conv2",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn2")(x)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_out")(x)


@register_encoder("resnet18")
def _resnet18(input_shape, width):
    """CIFAR-style ResNet-18 for 28-32 px images.

    3x3 conv (width=64, stride 1) + BN + ReLU stem with no max-pool, four stages of two
    basic blocks with [1, 2, 4, 8] x width filters (strides 1, 2, 2, 2), global average
    pooling -> 8 * width = 512 features. Convolutions have no bias (BN follows) and He-uniform
    kernels (variance 2 / fan_in, as He-normal, but cheaper to draw on JAX).
    """
    width = width or 64
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(
        width,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="he_uniform",
        name="stem_conv",
    )(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, multiplier in enumerate((1, 2, 4, 8), start=1):
        for block in (1, 2):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, width * multiplier, strides, name=f"stage{stage}_block{block}")
    outputs = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name="resnet18")


@register_encoder("resnet50v2")
def _resnet50v2(input_shape, width):
    """`keras.applications.ResNet50V2` (no top, random weights, average pooled): 2048 features.

    The application needs at least 32x32 inputs, so smaller images (28x28 MNIST) are resized
    bilinearly inside the encoder to at least 32 on each side. `width` must be None.
    """
    if width is not None:
        raise ValueError(f"resnet50v2 has a fixed width; pass width=None. Received: {width=}")
    inputs = keras.Input(shape=input_shape)
    x = inputs
    height, columns = input_shape[:2]
    if min(height, columns) < 32:
        x = layers.Resizing(max(height, 32), max(columns, 32), name="resize_to_32")(x)
    backbone = keras.applications.ResNet50V2(
        include_top=False, weights=None, input_tensor=x, pooling="avg"
    )
    # Re-wrap: the application's model takes a list of inputs; ours takes one tensor.
    return keras.Model(inputs, backbone.output, name="resnet50v2")


def feature_model(encoder, layer="encoder"):
    """The part of `encoder` whose output a classifier reads (`model.feature_layer`).

    `"encoder"`: `encoder` itself. `"flatten"`: a model sharing `encoder`'s layers whose
    output is the input of its last layer when that is a `Dense` (`small_cnn`'s 1,600-d
    flatten before its 128-d projection), else `encoder` itself (an encoder ending in pooling
    has nothing before its features). The model keeps `encoder`'s name, so `find_encoder`
    finds it inside a classifier.

    Returns:
        `keras.Model`, float `[0, 1]` images -> features.
    """
    if layer not in ("encoder", "flatten"):
        raise ValueError(f"layer must be 'encoder' or 'flatten'. Received: layer={layer!r}")
    last = encoder.layers[-1]
    if layer == "encoder" or not isinstance(last, layers.Dense):
        return encoder
    return keras.Model(encoder.inputs, last.input, name=encoder.name)


def build_projection_head(kind, feature_dim, *, projection_dim=128, hidden_dim=512, seed=None):
    """Builds the projection head used for the contrastive loss.

    `linear`: Dense(projection_dim) (the SupCon example's head, minus its output ReLU, which
    would confine the normalised projections to the positive orthant).
    `mlp`: Dense(hidden_dim, relu) -> Dense(projection_dim), no activation on the output
    (SimCLR).

    Args:
        kind: `"linear"` or `"mlp"`.
        feature_dim: encoder feature dimension.
        projection_dim: output dimension.
        hidden_dim: hidden units of the `mlp` head.
        seed: int seeding the kernel initializers, or None.

    Returns:
        `keras.Model` named `projection_head`: `[B, feature_dim]` -> `[B, projection_dim]`.
    """
    if kind not in PROJECTION_HEADS:
        raise ValueError(
            f"Unknown projection head kind={kind!r}. Known kinds: {list(PROJECTION_HEADS)}"
        )
    validation.check_int("feature_dim", feature_dim)
    validation.check_int("projection_dim", projection_dim)
    validation.check_int("hidden_dim", hidden_dim)
    validation.check_seed(seed)
    inputs = keras.Input(shape=(feature_dim,))
    x = inputs
    if kind == "mlp":
        x = layers.Dense(hidden_dim, activation="relu")(x)
    outputs = layers.Dense(projection_dim)(x)
    head = keras.Model(inputs, outputs, name="projection_head")
    return head if seed is None else _reseed(head, seed)


def build_classifier_head(
    kind, feature_dim, num_classes, *, hidden_dim=512, dropout=0.5, seed=None
):
    """Builds the classification head; it outputs class probabilities (softmax), not logits.

    `seed`: the SupCon example's head, Dropout -> Dense(hidden_dim, relu) -> Dropout ->
    Dense(num_classes) -> softmax.
    `linear`: Dense(num_classes) -> softmax (linear probe).
    The softmax runs in float32 so the head stays stable under mixed precision.

    Args:
        kind: `"seed"` or `"linear"`.
        feature_dim: encoder feature dimension.
        num_classes: number of classes.
        hidden_dim: hidden units of the `seed` head.
        dropout: dropout rate of the `seed` head, in `[0, 1)`.
        seed: int seeding the kernel initializers and dropout, or None.

    Returns:
        `keras.Model` named `classifier_head`: `[B, feature_dim]` -> probabilities
        `[B, num_classes]` (rows sum to 1); train with a non-logits cross-entropy.
    """
    if kind not in CLASSIFIER_HEADS:
        raise ValueError(
            f"Unknown classifier head kind={kind!r}. Known kinds: {list(CLASSIFIER_HEADS)}"
        )
    validation.check_int("feature_dim", feature_dim)
    validation.check_int("num_classes", num_classes)
    validation.check_int("hidden_dim", hidden_dim)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    validation.check_seed(seed)
    inputs = keras.Input(shape=(feature_dim,))
    x = inputs
    if kind == "seed":
        x = layers.Dropout(dropout)(x)
        x = layers.Dense(hidden_dim, activation="relu")(x)
        x = layers.Dropout(dropout)(x)
    x = layers.Dense(num_classes)(x)
    outputs = layers.Activation("softmax", dtype="float32")(x)
    head = keras.Model(inputs, outputs, name="classifier_head")
    return head if seed is None else _reseed(head, seed)


@keras.saving.register_keras_serializable(package="contrastive")
class KnnHead(keras.layers.Layer):
    """A weighted cosine kNN classifier as a layer: features -> class probabilities.

    Holds, as non-trainable weights, the standardisation `mean` / `scale` `[D]` of the
    features, a projection `[D, P]` (their principal subspace) and a reference set in it:
    L2-normalised rows `[N, P]` and their class targets `[N, C]` (one-hot labels, or label
    spreading's soft labels). A batch of features is standardised, projected and normalised;
    its `k` most cosine-similar references (`keras.ops.top_k`) vote with their targets
    weighted by `exp((similarity - best) / temperature)`; the votes are normalised to sum 1.
    Only `keras.ops`: it runs, saves and exports (SavedModel) on every backend.

    Args:
        num_references: N.
        feature_dim: D.
        projected_dim: P.
        num_classes: C.
        k: neighbours, >= 1 (at most N).
        temperature: > 0.
    """

    def __init__(
        self,
        num_references,
        feature_dim,
        projected_dim,
        num_classes,
        k,
        temperature=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (
            ("num_references", num_references),
            ("feature_dim", feature_dim),
            ("projected_dim", projected_dim),
            ("num_classes", num_classes),
            ("k", k),
        ):
            validation.check_int(name, value)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0. Received: temperature={temperature!r}")
        self.num_references, self.feature_dim = num_references, feature_dim
        self.projected_dim, self.num_classes = projected_dim, num_classes
        self.k, self.temperature = min(k, num_references), temperature
        shapes = {
            "mean": (feature_dim,),
            "scale": (feature_dim,),
            "projection": (feature_dim, projected_dim),
            "references": (num_references, projected_dim),
            "targets": (num_references, num_classes),
        }
        for name, shape in shapes.items():
            weight = self.add_weight(
                shape=shape,
                initializer="ones" if name == "scale" else "zeros",
                trainable=False,
                name=name,
            )
            setattr(self, name, weight)
        self.built = True

    def set_references(self, *, mean, scale, projection, references, targets):
        """Stores the fitted values; `references` (projected rows) are normalised here."""
        import numpy as np

        references = np.asarray(references, np.float32)
        norms = np.maximum(np.linalg.norm(references, axis=1, keepdims=True), 1e-12)
        for variable, value in (
            (self.mean, mean),
            (self.scale, scale),
            (self.projection, projection),
            (self.references, references / norms),
            (self.targets, targets),
        ):
            variable.assign(np.asarray(value, np.float32))

    def call(self, features):
        z = (ops.cast(features, "float32") - self.mean) / self.scale
        z = ops.matmul(z, self.projection)
        z = z * ops.rsqrt(ops.maximum(ops.sum(ops.square(z), axis=-1, keepdims=True), 1e-24))
        similarity = ops.matmul(z, ops.transpose(self.references))
        top, indices = ops.top_k(similarity, self.k)
        weights = ops.exp((top - top[:, :1]) / self.temperature)  # [B, k]
        votes = ops.sum(weights[:, :, None] * ops.take(self.targets, indices, axis=0), axis=1)
        return votes / ops.maximum(ops.sum(votes, axis=-1, keepdims=True), 1e-30)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_references=self.num_references,
            feature_dim=self.feature_dim,
            projected_dim=self.projected_dim,
            num_classes=self.num_classes,
            k=self.k,
            temperature=self.temperature,
        )
        return config


def build_fitted_head(fitted, feature_dim, num_classes):
    """The Keras head of a classifier fitted on frozen features
    (`contrastive.training.probe.FittedClassifier`): raw features -> probabilities.

    Linear kinds (`ridge`, `logistic`, `spread_ridge`): one float32 `Dense(num_classes)` whose
    kernel and bias fold in the standardisation and the score scale, then a float32 softmax:
    the same layers as `build_classifier_head("linear", ...)`. Neighbour kinds (`knn`,
    `label_spreading`): a `KnnHead` holding the reference set.

    Returns:
        `keras.Model` named `classifier_head`, `[B, feature_dim]` -> `[B, num_classes]`.
    """
    import numpy as np

    inputs = keras.Input(shape=(feature_dim,))
    if fitted.kind in ("ridge", "logistic", "spread_ridge"):
        scale = np.asarray(fitted.scale, np.float64)
        # scores = ((x - mean) / scale) @ W + b, times score_scale, as x @ W' + b'
        kernel = np.asarray(fitted.weights, np.float64) / scale[:, None]
        bias = np.asarray(fitted.bias, np.float64) - np.asarray(fitted.mean, np.float64) @ kernel
        weights = (kernel * fitted.score_scale, bias * fitted.score_scale)
        # float32 whatever the policy: fitted weights would lose digits in bfloat16
        dense = layers.Dense(num_classes, dtype="float32", name="fitted_dense")
        logits = dense(inputs)
        dense.set_weights([weights[0].astype(np.float32), weights[1].astype(np.float32)])
        outputs = layers.Activation("softmax", dtype="float32")(logits)
    else:
        head = KnnHead(
            fitted.reference.shape[0],
            feature_dim,
            fitted.projection.shape[1],
            num_classes,
            fitted.k,
            fitted.temperature,
            dtype="float32",
            name="knn_head",
        )
        outputs = head(inputs)
        head.set_references(
            mean=fitted.mean,
            scale=fitted.scale,
            projection=fitted.projection,
            references=fitted.reference,
            targets=fitted.reference_targets,
        )
    return keras.Model(inputs, outputs, name="classifier_head")
