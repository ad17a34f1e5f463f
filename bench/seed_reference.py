"""The seeds' way of training, rewritten by us for Keras 3: the reference our speed is judged by.

The keras-io "Supervised Contrastive Learning" examples (seeds 000-002, Salama 2020) train with
NumPy arrays handed to `model.fit`, the augmentation as Keras preprocessing layers at the front
of the encoder, and these settings:

- augmentation (seed 000): `Normalization` (adapted on the training images) ->
  `RandomFlip("horizontal")` -> `RandomRotation(0.02)` -> `RandomWidth(0.2)` +
  `RandomHeight(0.2)`. Keras 3 has no `RandomWidth`/`RandomHeight`; `RandomZoom(0.2, 0.2)`
  (independent height and width factors, same output size) is the nearest equivalent that
  also keeps a `Flatten` encoder such as `small_cnn` at a fixed input size.
- projection head: `Dense(128, activation="relu")` on the encoder features;
- loss: tensorflow-addons' `npairs_loss` of `z z^T / temperature` (z the L2-normalised
  projections of one view), temperature 0.05;
- classifier head: `Dropout(0.5) -> Dense(512, relu) -> Dropout(0.5) -> Dense(softmax)`;
- optimiser: `Adam(1e-3)` everywhere, `jit_compile` left at Keras' default.

Only `keras.ops` is used (tensorflow-addons is gone), so the reference runs on TensorFlow and
JAX alike. `seed_npairs_loss` follows tfa's formula literally (no max subtraction, no masking)
and is tested against `contrastive.losses.npairs_loss` in `tests/unit/test_bench_reference.py`.
"""

from __future__ import annotations

import keras
from keras import layers, ops

PROJECTION_UNITS = 128
HIDDEN_UNITS = 512
DROPOUT = 0.5
TEMPERATURE = 0.05
LEARNING_RATE = 1e-3


def seed_npairs_loss(labels, feature_vectors, temperature=TEMPERATURE):
    """tfa `npairs_loss(labels, z z^T / temperature)` as the seeds call it.

    `y_ij = [label_i == label_j] / |{k : label_k == label_i}|` (self included), then the
    softmax cross-entropy of each similarity row against `y_i`, averaged over the batch.

    Args:
        labels: `[batch]` or `[batch, 1]` labels (any numeric dtype; Keras hands them over
            as floats).
        feature_vectors: `[batch, dim]` projections of one view.
        temperature: softmax temperature.

    Returns:
        Scalar loss.
    """
    labels = ops.reshape(labels, (-1, 1))
    feature_vectors = ops.cast(feature_vectors, "float32")
    normalized = feature_vectors / ops.maximum(
        ops.sqrt(ops.sum(ops.square(feature_vectors), axis=1, keepdims=True)), 1e-12
    )
    logits = ops.matmul(normalized, ops.transpose(normalized)) / temperature
    targets = ops.cast(ops.equal(labels, ops.transpose(labels)), "float32")
    targets = targets / ops.sum(targets, axis=1, keepdims=True)
    return ops.mean(-ops.sum(targets * ops.log_softmax(logits, axis=1), axis=1))


def build_seed_augmentation(train_images, *, augment=True, seed=None):
    """Seed 000's augmentation `Sequential`, its `Normalization` adapted on `train_images`.

    `augment=False` keeps only the normalisation (seed 002 trained without augmentation).
    """
    stages = [layers.Normalization(name="normalization")]
    if augment:
        stages += [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(0.02, seed=seed),
            layers.RandomZoom(height_factor=0.2, width_factor=0.2, seed=seed),
        ]
    augmentation = keras.Sequential(stages, name="data_augmentation")
    augmentation.layers[0].adapt(train_images.astype("float32"))
    return augmentation


def build_seed_encoder(encoder, augmentation):
    """`Input -> augmentation -> encoder`, as seed 000's `create_encoder` (the encoder maps
    images to pooled features; we reuse `contrastive.models` encoders for an equal network)."""
    inputs = keras.Input(shape=encoder.input_shape[1:])
    outputs = encoder(augmentation(inputs))
    return keras.Model(inputs, outputs, name="seed_encoder")


def build_seed_pretrain_model(seed_encoder, *, temperature=TEMPERATURE, jit_compile="auto"):
    """Seed 000's `add_projection_head` + compile: `Dense(128, relu)`, npairs, Adam 1e-3."""
    inputs = keras.Input(shape=seed_encoder.input_shape[1:])
    features = seed_encoder(inputs)
    outputs = layers.Dense(PROJECTION_UNITS, activation="relu")(features)
    model = keras.Model(inputs, outputs, name="seed_encoder_with_projection_head")

    def supervised_contrastive_loss(labels, feature_vectors):
        return seed_npairs_loss(labels, feature_vectors, temperature)

    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=supervised_contrastive_loss,
        jit_compile=jit_compile,
    )
    return model


def build_seed_classifier(seed_encoder, num_classes, *, trainable=True, jit_compile="auto"):
    """Seed 000's `create_classifier`: dropout-512-dropout-softmax head, Adam 1e-3, sparse CE.

    `trainable=True` is the cross-entropy baseline; `False` freezes the encoder's layers (the
    seed's second phase; its augmentation still runs in training mode).
    """
    for layer in seed_encoder.layers:
        layer.trainable = trainable
    inputs = keras.Input(shape=seed_encoder.input_shape[1:])
    features = seed_encoder(inputs)
    features = layers.Dropout(DROPOUT)(features)
    features = layers.Dense(HIDDEN_UNITS, activation="relu")(features)
    features = layers.Dropout(DROPOUT)(features)
    outputs = layers.Dense(num_classes, activation="softmax")(features)
    model = keras.Model(inputs, outputs, name="seed_classifier")
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        jit_compile=jit_compile,
    )
    return model
