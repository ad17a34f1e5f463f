"""Shared fixtures: a small synthetic image set whose classes are separable, and its ingest."""

import numpy as np
import pytest


def separable_images(num_per_class: int, *, num_classes: int = 4, size: int = 28, seed: int = 0):
    """uint8 [N, size, size, 1] images: class k is a bright horizontal band at height k, plus
    noise. Bands survive horizontal flips and mild crops, so the classes stay separable under the
    augmentations (quadrant patterns would not: a flip swaps left and right)."""
    rng = np.random.default_rng(seed)
    band = size // num_classes
    images, labels = [], []
    for label in range(num_classes):
        for _ in range(num_per_class):
            image = rng.integers(0, 60, size=(size, size, 1))
            top = label * band + rng.integers(0, 2)
            image[top : top + band - 2, 2 : size - 2] = rng.integers(180, 255)
            images.append(image)
            labels.append(label)
    order = rng.permutation(len(labels))
    return np.asarray(images, dtype=np.uint8)[order], np.asarray(labels, dtype=np.int64)[order]


@pytest.fixture(scope="session")
def separable_npz(tmp_path_factory):
    """An npz source (x_train, y_train, x_test, y_test) of separable 28x28x1 images."""
    x_train, y_train = separable_images(100, seed=1)
    x_test, y_test = separable_images(25, seed=2)
    path = tmp_path_factory.mktemp("npz") / "separable.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture(scope="session")
def tiny_dataset(separable_npz, tmp_path_factory):
    """The separable set ingested to TFRecords (train 360 / validation 40 / test 100)."""
    from contrastive import data

    output = tmp_path_factory.mktemp("datasets") / "separable"
    data.ingest(
        f"npz:{separable_npz}", str(output), validation_fraction=0.1, seed=0, progress=False
    )
    return str(output)
