"""Contrastive losses: SupCon (Khosla et al. 2020), SimCLR's NT-Xent and the seeds' n-pairs.

Each loss is a pure function of tensors (`supcon_loss`, `npairs_loss`) plus a thin, registered
`keras.losses.Loss` wrapper (`SupConLoss`, `SimCLRLoss`, `NPairsLoss`); which method uses
which wrapper is `contrastive.methods`' business. Only `keras.ops` is used, so every backend
runs them.

All three compute in float32 whatever the input dtype (mixed precision included) and return a
float32 scalar: the mean is taken inside the loss, over anchors, so a per-sample `sample_weight`
has no meaning and the wrappers reject it.

Negative labels (the data contract's `-1`, "no label") never match anything: an unlabeled image's
only positives are its own other views (SupCon) or itself (n-pairs).
"""

import keras
from keras import ops

from contrastive import validation

# Stands in for -inf on the self-similarity diagonal: exp() of it is exactly 0 in float32,
# and unlike -inf it keeps `0 * value` and the gradients finite.
_MASKED_LOGIT = -1e9


def supcon_loss(features, labels=None, temperature=0.1, base_temperature=None):
    """Supervised contrastive loss (SupCon, L_out), or SimCLR's NT-Xent when `labels` is None.

    Every one of the `batch * views` feature vectors `z_i` (L2-normalised here) is an anchor.
    With `A(i)` all entries but `i`, `P(i)` the entries of `A(i)` sharing `i`'s label (the
    other views of the same image always included) and `A'` the anchors with `P(i)` non-empty:

        loss_i = -(temperature / base_temperature) / |P(i)|
                 * sum_{p in P(i)} log( exp(z_i.z_p / temperature)
                                        / sum_{a in A(i)} exp(z_i.z_a / temperature) )
        loss   = mean_{i in A'} loss_i          (0 when A' is empty)

    The mean runs over anchors that have at least one positive, so an anchor without one (a
    unique label with one view) neither adds a NaN nor dilutes the loss; the reference code of
    the paper divides by the count of all anchors instead. Computed in float32 with the row
    maximum subtracted, so it stays finite at `temperature=0.01` and for float16/bfloat16 input.

    Args:
        features: `[batch, views, dim]` float tensor, any scale (normalised inside).
        labels: `[batch]` (or `[batch, 1]`) integer class labels; negative values mean
            "unlabeled". `None` (default) gives SimCLR's NT-Xent: the positives of an entry
            are only the other views of its image.
        temperature: Softmax temperature, > 0. Defaults to `0.1`.
        base_temperature: If set (> 0), the loss is scaled by `temperature / base_temperature`
            as in the paper's reference code. Defaults to `None` (no scaling).

    Returns:
        A float32 scalar.

    References:
        Khosla et al. 2020, "Supervised Contrastive Learning", arXiv:2004.11362, Eq. 2.
        Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
        Representations", arXiv:2002.05709 (NT-Xent).
    """
    scale = _loss_scale(temperature, base_temperature)
    features = _as_float32(features)
    if len(features.shape) != 3:
        raise ValueError(
            "features must have rank 3, [batch, views, dim]. "
            f"Received: features.shape={tuple(features.shape)}"
        )
    image_ids = ops.arange(ops.shape(features)[0])
    labels = image_ids if labels is None else _as_labels(labels, features)

    # One row per (image, view), batch-major: [batch * views, dim]; per-row image id and label.
    per_view = ops.zeros_like(features[:, :, 0], dtype="int32")
    entry_image = ops.reshape(image_ids[:, None] + per_view, (-1,))
    entry_label = ops.reshape(labels[:, None] + ops.cast(per_view, labels.dtype), (-1,))
    embeddings = _l2_normalize(ops.reshape(features, (-1, ops.shape(features)[-1])))

    entry_index = ops.arange(ops.shape(embeddings)[0])
    is_self = ops.equal(entry_index[:, None], entry_index[None, :])
    same_image = ops.equal(entry_image[:, None], entry_image[None, :])
    same_class = ops.logical_and(
        ops.equal(entry_label[:, None], entry_label[None, :]),
        ops.greater_equal(entry_label, 0)[:, None],
    )
    is_positive = ops.logical_and(ops.logical_or(same_image, same_class), ops.logical_not(is_self))

    logits = ops.matmul(embeddings, ops.transpose(embeddings)) / temperature
    logits = ops.where(is_self, _MASKED_LOGIT, logits)
    # The row maximum over A(i) (self excluded) makes the largest denominator term exp(0) = 1,
    # so the log never sees 0 however low the temperature.
    logits = logits - ops.stop_gradient(ops.max(logits, axis=1, keepdims=True))
    log_prob = logits - ops.log(ops.sum(ops.exp(logits), axis=1, keepdims=True))

    positives = ops.sum(ops.cast(is_positive, "float32"), axis=1)
    positive_log_prob = ops.sum(ops.where(is_positive, log_prob, 0.0), axis=1)
    anchor_loss = -scale * positive_log_prob / ops.maximum(positives, 1.0)

    has_positive = ops.greater(positives, 0.0)
    num_anchors = ops.sum(ops.cast(has_positive, "float32"))
    total = ops.sum(ops.where(has_positive, anchor_loss, 0.0))
    return total / ops.maximum(num_anchors, 1.0)


def npairs_loss(features, labels, temperature=0.05, base_temperature=None):
    """Multi-class n-pairs loss on one view, as the seeds compute it (tfa's `npairs_loss`).

    With `z_i` the L2-normalised features, `s_ij = z_i.z_j / temperature` over the whole batch
    (self included) and `y_ij = [label_i == label_j] / |{k : label_k == label_i}|`:

        loss = -(temperature / base_temperature) * mean_i sum_j y_ij log softmax_j(s_ij)

    Every row has a target (itself at least), so the loss is always finite. An unlabeled image
    (negative label) targets only itself.

    Args:
        features: `[batch, dim]` or `[batch, 1, dim]` float tensor, any scale.
        labels: `[batch]` (or `[batch, 1]`) integer class labels.
        temperature: Softmax temperature, > 0. Defaults to `0.05` (the seeds' value).
        base_temperature: If set (> 0), scales the loss by `temperature / base_temperature`.
            Defaults to `None` (no scaling, the seeds' formulation).

    Returns:
        A float32 scalar.

    References:
        Sohn 2016, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective"
        (NeurIPS); Khosla et al. 2020, arXiv:2004.11362 (used as its baseline).
    """
    scale = _loss_scale(temperature, base_temperature)
    features = _as_float32(features)
    if len(features.shape) == 3 and features.shape[1] == 1:
        features = features[:, 0, :]
    if len(features.shape) != 2:
        raise ValueError(
            "features must have shape [batch, dim] or [batch, 1, dim]. "
            f"Received: features.shape={tuple(features.shape)}"
        )
    labels = _as_labels(labels, features)
    embeddings = _l2_normalize(features)

    entry_index = ops.arange(ops.shape(embeddings)[0])
    is_self = ops.equal(entry_index[:, None], entry_index[None, :])
    same_class = ops.logical_and(
        ops.equal(labels[:, None], labels[None, :]), ops.greater_equal(labels, 0)[:, None]
    )
    targets = ops.cast(ops.logical_or(same_class, is_self), "float32")
    targets = targets / ops.sum(targets, axis=1, keepdims=True)

    logits = ops.matmul(embeddings, ops.transpose(embeddings)) / temperature
    logits = logits - ops.stop_gradient(ops.max(logits, axis=1, keepdims=True))
    log_prob = logits - ops.log(ops.sum(ops.exp(logits), axis=1, keepdims=True))
    return -scale * ops.mean(ops.sum(targets * log_prob, axis=1))


class ContrastiveLoss(keras.losses.Loss):
    """A `Loss` whose `call` already returns the batch's scalar loss: the base of every
    pretraining loss (`contrastive.methods`); `call(labels, projections)` may get labels None.

    Keras' `Loss.__call__` would cast `y_true` to a float dtype (labels beyond 256 collide in
    bfloat16) and weight the scalar by `sample_weight`; here `call` gets the raw inputs and
    `sample_weight` is refused.
    """

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} averages over anchors inside the loss and does not "
                "support sample_weight. Received: sample_weight with shape "
                f"{tuple(ops.shape(sample_weight))}"
            )
        with keras.name_scope(self.name):
            return self.call(y_true, y_pred)


@keras.saving.register_keras_serializable(package="contrastive")
class SupConLoss(ContrastiveLoss):
    """Supervised contrastive loss (Khosla et al. 2020) as a `keras.losses.Loss`.

    `call(y_true, y_pred)` returns `supcon_loss(y_pred, y_true, temperature, base_temperature)`
    with `y_pred` the `[batch, views, dim]` projections and `y_true` the `[batch]` labels
    (ignored, and may be None, when `supervised=False`).

    Args:
        temperature: Softmax temperature, > 0. Defaults to `0.1`.
        base_temperature: Optional; scales the loss by `temperature / base_temperature`.
            Defaults to `None`.
        supervised: If False, labels are ignored and the loss is SimCLR's NT-Xent.
            Defaults to `True`.
        name: Loss name. Defaults to `"supcon_loss"`.
        **kwargs: `reduction` / `dtype`, passed to `keras.losses.Loss` (the loss is already
            a scalar, so reduction does not change it).

    Reference: Khosla et al. 2020, arXiv:2004.11362.
    """

    def __init__(
        self,
        temperature=0.1,
        base_temperature=None,
        supervised=True,
        name="supcon_loss",
        **kwargs,
    ):
        _loss_scale(temperature, base_temperature)
        super().__init__(name=name, **kwargs)
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.supervised = bool(supervised)

    def call(self, y_true, y_pred):
        labels = y_true if self.supervised else None
        return supcon_loss(y_pred, labels, self.temperature, self.base_temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "base_temperature": self.base_temperature,
            "supervised": self.supervised,
        }


@keras.saving.register_keras_serializable(package="contrastive")
class SimCLRLoss(SupConLoss):
    """SimCLR's NT-Xent loss (Chen et al. 2020): `SupConLoss` with `supervised=False`.

    `call(y_true, y_pred)` ignores `y_true` (it may be None); `y_pred` is `[batch, views, dim]`.

    Args:
        temperature: Softmax temperature, > 0. Defaults to `0.1`.
        base_temperature: Optional; scales the loss by `temperature / base_temperature`.
            Defaults to `None`.
        name: Loss name. Defaults to `"simclr_loss"`.
        **kwargs: `reduction` / `dtype`, passed to `keras.losses.Loss`.

    Reference: Chen et al. 2020, arXiv:2002.05709.
    """

    def __init__(self, temperature=0.1, base_temperature=None, name="simclr_loss", **kwargs):
        super().__init__(temperature, base_temperature, supervised=False, name=name, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["supervised"]
        return config


@keras.saving.register_keras_serializable(package="contrastive")
class NPairsLoss(ContrastiveLoss):
    """The seeds' n-pairs loss as a `keras.losses.Loss`; see `npairs_loss`.

    `call(y_true, y_pred)`: `y_true` `[batch]` labels, `y_pred` `[batch, dim]` or
    `[batch, 1, dim]` projections.

    Args:
        temperature: Softmax temperature, > 0. Defaults to `0.05`.
        base_temperature: Optional; scales the loss by `temperature / base_temperature`.
            Defaults to `None`.
        name: Loss name. Defaults to `"npairs_loss"`.
        **kwargs: `reduction` / `dtype`, passed to `keras.losses.Loss`.

    Reference: Sohn 2016 (NeurIPS); Khosla et al. 2020, arXiv:2004.11362.
    """

    def __init__(self, temperature=0.05, base_temperature=None, name="npairs_loss", **kwargs):
        _loss_scale(temperature, base_temperature)
        super().__init__(name=name, **kwargs)
        self.temperature = temperature
        self.base_temperature = base_temperature

    def call(self, y_true, y_pred):
        return npairs_loss(y_pred, y_true, self.temperature, self.base_temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "base_temperature": self.base_temperature,
        }


def _loss_scale(temperature, base_temperature):
    """Validates the temperatures; returns the factor `temperature / base_temperature`."""
    validation.check_positive("temperature", temperature)
    if base_temperature is None:
        return 1.0
    validation.check_positive("base_temperature", base_temperature)
    return temperature / base_temperature


def _as_float32(features):
    # Float32 even under a mixed-precision policy: exp(1 / 0.01) overflows float16.
    return ops.cast(ops.convert_to_tensor(features), "float32")


def _as_labels(labels, features):
    """Returns labels as a `[batch]` tensor, checking it against `features`' batch size."""
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    batch = features.shape[0]
    if len(labels.shape) != 1 or (
        labels.shape[0] is not None and batch is not None and labels.shape[0] != batch
    ):
        raise ValueError(
            "labels must have shape [batch] matching features. "
            f"Received: labels.shape={tuple(labels.shape)}, "
            f"features.shape={tuple(features.shape)}"
        )
    return labels


def _l2_normalize(vectors):
    squared_norm = ops.sum(ops.square(vectors), axis=-1, keepdims=True)
    # The floor keeps an all-zero vector finite (it stays zero) instead of 0 / 0.
    return vectors * ops.rsqrt(ops.maximum(squared_norm, 1e-12))
