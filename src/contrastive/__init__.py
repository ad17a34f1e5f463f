"""contrastive: supervised contrastive (SupCon) and SimCLR image classifiers.

The library never imports `kfp`. Model code (`losses`, `augment`, `models`, `training`) uses
`keras.ops` only and imports without TensorFlow; `contrastive.data` is the one place that uses
TensorFlow (`tf.data`, TFRecords).

Saved models hold custom layers, losses and models (`RandomResizedCrop`, `PretrainModel`, ...).
Importing `contrastive` registers nothing and loads neither Keras nor TensorFlow; a model is
loaded with its custom objects named explicitly, as Keras does it:

    import contrastive
    model = contrastive.load_model("model.keras")  # safe_mode=True

    import contrastive, keras
    model = keras.saving.load_model("model.keras", custom_objects=contrastive.custom_objects())
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# The modules that define the package's custom Keras objects (`register_keras_serializable`,
# package "contrastive"); `custom_objects` imports them.
_DEFINING_MODULES = (
    "contrastive.augment",
    "contrastive.losses",
    "contrastive.models",
    "contrastive.training",
)
_PACKAGE_PREFIX = "contrastive>"


def custom_objects() -> dict[str, type]:
    """Every custom Keras object of the package, by its registered name.

    The names are those the saved files hold (`"contrastive>SupConLoss"`, ...), so the dict
    is what `keras.saving.load_model(path, custom_objects=...)` and
    `keras.saving.custom_object_scope` take. Imports Keras (not TensorFlow).
    """
    import keras

    for name in _DEFINING_MODULES:
        importlib.import_module(name)
    return {
        name: value
        for name, value in keras.saving.get_custom_objects().items()
        if name.startswith(_PACKAGE_PREFIX)
    }


def load_model(path: str | os.PathLike, *, compile: bool = True, safe_mode: bool = True):
    """`keras.saving.load_model` with the package's `custom_objects()`.

    Args:
        path: a `.keras` file saved by this package (encoder, classifier, baseline or
            pretraining model), local.
        compile: restore the optimizer and loss too.
        safe_mode: refuse lambda layers and other code in the file (keep True for files you
            did not write).
    """
    import keras

    return keras.saving.load_model(
        os.fspath(path), custom_objects=custom_objects(), compile=compile, safe_mode=safe_mode
    )
