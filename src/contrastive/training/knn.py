"""Embedding, prediction and the weighted kNN monitor of self-supervised learning.

These helpers run on the host in NumPy after the model has produced features; the model
itself runs through `predict_on_batch`, one fixed-size batch at a time, so memory stays
bounded and a jitted predict function is compiled once.
"""

import keras
import numpy as np

from contrastive import validation


def embed(encoder, images, batch_size=512):
    """Features of `images` from `encoder` in inference mode.

    Args:
        encoder: `keras.Model` mapping float `[B, H, W, C]` in `[0, 1]` to `[B, D]`.
        images: `[N, H, W, C]` in `[0, 255]` (uint8 or any numeric dtype); rescaled here.
        batch_size: images per forward pass, >= 1.

    Returns:
        float32 NumPy `[N, D]`.
    """
    return _batched(encoder, images, batch_size, scale=1.0 / 255.0)


def embed_batches(encoder, batches, batch_size=512):
    """`embed` over a stream of batches, in bounded memory (a split read by `read_split`).

    Each batch is padded to `batch_size` (the shape compiled once; padding rows dropped).

    Args:
        encoder: as `embed`.
        batches: iterable of tuples whose first entry is images `[b, H, W, C]`, b <= batch_size
            (e.g. `(images, labels)` or `(images, labels, ids)` NumPy batches).
        batch_size: images per forward pass, >= 1.

    Yields:
        `(features float32 [b, D], *batch[1:])` per batch.
    """
    from contrastive.evaluation import pad_batch

    for batch in batches:
        images = np.asarray(batch[0])
        features = embed(encoder, pad_batch(images, batch_size), batch_size)[: len(images)]
        yield (features, *batch[1:])


def predict_proba(model, images, batch_size=512):
    """Class probabilities of a classifier (which rescales its `[0, 255]` input itself).

    Args:
        model: classifier from `build_classifier` / `train_classifier` / `train_baseline`.
        images: `[N, H, W, C]` in `[0, 255]`.
        batch_size: images per forward pass, >= 1.

    Returns:
        float32 NumPy `[N, num_classes]`, rows summing to 1.
    """
    return _batched(model, images, batch_size, scale=1.0)


def knn_predict(
    reference_features,
    reference_labels,
    query_features,
    *,
    k=200,
    temperature=0.1,
    num_classes=None,
    batch_size=512,
):
    """Weighted kNN classification on cosine similarity (Wu et al. 2018).

    Features are L2-normalised; for each query the `k` most similar references vote for
    their class with weight `exp(similarity / temperature)`; the class with the largest
    total wins (ties go to the lower class index). Similarities are computed for
    `batch_size` queries at a time, so memory is `batch_size * N` floats.

    Args:
        reference_features: `[N, D]`.
        reference_labels: int `[N]` in `[0, num_classes)`.
        query_features: `[M, D]`.
        k: neighbours, >= 1 (capped at `N`).
        temperature: > 0.
        num_classes: number of classes; defaults to `max(reference_labels) + 1`.
        batch_size: queries per similarity block, >= 1.

    Returns:
        int64 NumPy `[M]` predicted labels.

    Reference: Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance
    Discrimination" (CVPR), Sec. 3.4.
    """
    validation.check_int("k", k)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0. Received: temperature={temperature!r}")
    labels = np.asarray(reference_labels).astype(np.int64)
    if np.shape(reference_features)[0] == 0 or np.shape(reference_features)[0] != len(labels):
        raise ValueError(
            "reference_features and reference_labels must have the same, non-zero length. "
            f"Received: {np.shape(reference_features)[0]} features, {labels.shape[0]} labels"
        )
    if labels.min() < 0:
        raise ValueError(f"reference_labels must be >= 0. Received: min label {labels.min()}")
    num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    predictions = np.empty(np.shape(query_features)[0], dtype=np.int64)
    blocks = nearest_neighbours(reference_features, query_features, k, batch_size=batch_size)
    for start, neighbours, top in blocks:
        # Subtracting the row maximum keeps exp() finite; it scales a row's votes equally.
        weights = np.exp((top - top.max(axis=1, keepdims=True)) / temperature)
        votes = np.zeros((neighbours.shape[0], num_classes), dtype=np.float64)
        rows = np.broadcast_to(np.arange(neighbours.shape[0])[:, None], neighbours.shape)
        np.add.at(votes, (rows, labels[neighbours]), weights)
        predictions[start : start + len(neighbours)] = votes.argmax(axis=1)
    return predictions


def nearest_neighbours(
    reference_features, query_features, k, *, batch_size=512, exclude_self=False
):
    """The `k` most cosine-similar references of each query, block by block.

    Features are L2-normalised here (a float32 copy). Similarities are computed for
    `batch_size` queries at a time, so memory is `batch_size * N` floats besides the inputs.

    Args:
        reference_features: `[N, D]`, N >= 1.
        query_features: `[M, D]`.
        k: neighbours, >= 1 (capped at the number of candidates).
        batch_size: queries per similarity block, >= 1.
        exclude_self: the queries are the references (`M == N`, same order): a query is
            never its own neighbour (ties with copies of it elsewhere still count).

    Yields:
        `(start, indices, similarities)` per block of queries `start:start + b`: int64
        `[b, k]` reference indices, most similar first (ties: lower index first), and their
        float32 cosine similarities.
    """
    validation.check_int("k", k)
    validation.check_int("batch_size", batch_size)
    reference = _normalize(reference_features)
    query = reference if exclude_self else _normalize(query_features)
    count = reference.shape[0]
    if count == 0:
        raise ValueError("reference_features must hold at least one example. Received: 0")
    if exclude_self and np.shape(query_features)[0] != count:
        raise ValueError(
            "exclude_self needs the queries to be the references. "
            f"Received: {np.shape(query_features)[0]} queries, {count} references"
        )
    k = min(int(k), count - 1 if exclude_self else count)
    if k < 1:
        raise ValueError("exclude_self needs at least two references. Received: 1")
    # The similarities and their top k in `keras.ops` (TensorFlow's or XLA's top-k, on the
    # accelerator when there is one): several times faster than NumPy's argpartition here.
    transposed = keras.ops.transpose(keras.ops.convert_to_tensor(reference))
    for start in range(0, query.shape[0], batch_size):
        rows = query[start : start + batch_size]
        block = keras.ops.matmul(keras.ops.convert_to_tensor(rows), transposed)  # [b, N]
        if exclude_self:  # below every cosine similarity (>= -1): never among the top k
            own = keras.ops.one_hot(np.arange(start, start + len(rows)), count, dtype="float32")
            block = block - 3.0 * own
        values, indices = keras.ops.top_k(block, k, sorted=True)
        top = keras.ops.convert_to_numpy(values).astype(np.float32)
        neighbours = keras.ops.convert_to_numpy(indices).astype(np.int64)
        order = np.lexsort((neighbours, -top), axis=1)  # most similar first, then index
        neighbours = np.take_along_axis(neighbours, order, axis=1)
        yield start, neighbours.astype(np.int64), np.take_along_axis(top, order, axis=1)


def knn_accuracy(
    encoder, train_x, train_y, query_x, query_y, k=200, temperature=0.1, batch_size=512
):
    """Accuracy of the weighted kNN classifier (`knn_predict`) on `encoder` features.

    Unlabelled examples (label < 0) are left out of the references and the queries.

    Args:
        encoder: `keras.Model`, float `[0, 1]` images -> features.
        train_x, train_y: reference images `[N, H, W, C]` in `[0, 255]` and int labels `[N]`.
        query_x, query_y: query images and labels.
        k: neighbours. Defaults to 200.
        temperature: vote temperature. Defaults to 0.1.
        batch_size: images per forward pass and queries per similarity block.

    Returns:
        Python float in `[0, 1]`.
    """
    train_x, train_y = _labelled(train_x, train_y, "train")
    query_x, query_y = _labelled(query_x, query_y, "query")
    num_classes = int(max(train_y.max(), query_y.max())) + 1
    predicted = knn_predict(
        embed(encoder, train_x, batch_size),
        train_y,
        embed(encoder, query_x, batch_size),
        k=k,
        temperature=temperature,
        num_classes=num_classes,
        batch_size=batch_size,
    )
    return float(np.mean(predicted == query_y))


@keras.saving.register_keras_serializable(package="contrastive")
class KnnMonitor(keras.callbacks.Callback):
    """Logs `val_knn_accuracy` (see `knn_accuracy`) at the end of every `every`-th epoch.

    The value is added to the epoch logs, so it lands in `History` (and reaches
    `EarlyStopping` or `ModelCheckpoint`). Like Keras' `validation_freq`, epochs that are
    skipped have no entry, so the history list is shorter than `loss` when `every > 1`; the
    last epoch is always evaluated. Reference and query sets are subsampled once, at
    construction, to at most `max_examples` labelled examples each.

    `get_config` holds the scalar settings only: the encoder and the arrays are not
    serialisable.

    Args:
        encoder: `keras.Model` whose features are evaluated (shares weights with the model
            being trained).
        reference_x, reference_y: labelled reference images `[N, H, W, C]` and labels.
        query_x, query_y: labelled query images and labels.
        k, temperature: kNN settings.
        every: evaluate every `every` epochs, >= 1.
        max_examples: subsample size of each set, >= 1.
        batch_size: images per forward pass.
        seed: seed of the subsampling.
        name: log key. Defaults to `"val_knn_accuracy"`.
    """

    def __init__(
        self,
        encoder,
        reference_x,
        reference_y,
        query_x,
        query_y,
        *,
        k=200,
        temperature=0.1,
        every=1,
        max_examples=10_000,
        batch_size=512,
        seed=0,
        name="val_knn_accuracy",
    ):
        super().__init__()
        validation.check_int("every", every)
        validation.check_int("max_examples", max_examples)
        rng = np.random.default_rng(seed)
        self.encoder = encoder
        self.reference = _subsample(
            *_labelled(reference_x, reference_y, "reference"), max_examples, rng
        )
        self.query = _subsample(*_labelled(query_x, query_y, "query"), max_examples, rng)
        self.k, self.temperature, self.every = k, temperature, every
        self.max_examples, self.batch_size, self.seed, self.name = (
            max_examples,
            batch_size,
            seed,
            name,
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        last = epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every and not last:
            return
        logs[self.name] = knn_accuracy(
            self.encoder,
            *self.reference,
            *self.query,
            k=self.k,
            temperature=self.temperature,
            batch_size=self.batch_size,
        )

    def get_config(self):
        return {
            "k": self.k,
            "temperature": self.temperature,
            "every": self.every,
            "max_examples": self.max_examples,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "name": self.name,
        }


def _batched(model, images, batch_size, scale):
    """`model.predict_on_batch` over fixed-size float32 batches; float32 NumPy output.

    Every batch has the same size (one compiled shape), a multiple of the devices of the
    active Keras distribution (data-parallel: a batch is split evenly over them): a short
    batch is padded with zeros, whose outputs are dropped (inference mode treats examples
    independently, so the padding does not change the others)."""
    validation.check_int("batch_size", batch_size)
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C]. Received: images.shape={images.shape}")
    devices = _distribution_devices()
    size = min(batch_size, images.shape[0]) if devices == 1 else batch_size
    size = -(-size // devices) * devices
    outputs = []
    for start in range(0, images.shape[0], batch_size):
        chunk = images[start : start + batch_size].astype(np.float32) * np.float32(scale)
        count = chunk.shape[0]
        if count < size:
            chunk = np.concatenate([chunk, np.zeros((size - count, *chunk.shape[1:]), np.float32)])
        result = keras.ops.convert_to_numpy(model.predict_on_batch(chunk))
        outputs.append(np.asarray(result[:count], dtype=np.float32))
    if not outputs:
        spec = model.compute_output_shape((0, *images.shape[1:]))
        return np.zeros((0, *spec[1:]), dtype=np.float32)
    return np.concatenate(outputs)


def _distribution_devices():
    """Devices a batch is split over by the active Keras distribution (1 without one)."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    return int(np.prod(distribution.device_mesh.shape))


def _labelled(x, y, name):
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name} images and labels differ in length. "
            f"Received: {x.shape[0]} images, {y.shape[0]} labels"
        )
    keep = y >= 0
    if not keep.any():
        raise ValueError(f"{name} has no labelled example (all {y.shape[0]} labels are < 0)")
    return x[keep], y[keep].astype(np.int64)


def _subsample(x, y, max_examples, rng):
    if x.shape[0] <= max_examples:
        return x, y
    keep = np.sort(rng.choice(x.shape[0], size=max_examples, replace=False))
    return x[keep], y[keep]


def _normalize(features):
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D]. Received: shape={features.shape}")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def sample_knn_accuracy(encoder, sample, *, k=200, temperature=0.1):
    """`knn_accuracy` of `(train_x, train_y, query_x, query_y)`, or None when the sample is
    missing or one side has no labelled image."""
    if sample is None or not len(sample[1]) or not len(sample[3]):
        return None
    return float(knn_accuracy(encoder, *sample, k=k, temperature=temperature))
