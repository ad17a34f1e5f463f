"""contrastive: supervised contrastive (SupCon) and SimCLR image classifiers.

The library never imports `kfp`. Model code (`losses`, `augment`, `models`, `training`) uses
`keras.ops` only and imports without TensorFlow; `contrastive.data` is the one place that uses
TensorFlow (`tf.data`, TFRecords).

Saved models hold custom layers, losses and models (`RandomResizedCrop`, `PretrainModel`, ...).
`import contrastive` makes Keras know them in any process: at once when Keras is already
imported, else as soon as Keras finishes importing (importing `contrastive` alone loads neither
Keras nor TensorFlow). So both work in a fresh process:

    import contrastive, keras
    model = keras.saving.load_model("model.keras")

    import contrastive
    model = contrastive.load_model("model.keras")  # safe_mode=True
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys

__version__ = "0.1.0"

# The modules whose import registers every custom object (`register_keras_serializable`).
_REGISTERING_MODULES = (
    "contrastive.augment",
    "contrastive.losses",
    "contrastive.models",
    "contrastive.training",
)


def register_custom_objects() -> None:
    """Register every custom Keras object of the package (imports Keras)."""
    import importlib

    for name in _REGISTERING_MODULES:
        importlib.import_module(name)


def load_model(path: str | os.PathLike, *, compile: bool = True, safe_mode: bool = True):
    """`keras.saving.load_model` with every custom object of the package registered.

    Args:
        path: a `.keras` file saved by this package (encoder, classifier, baseline or
            pretraining model), local.
        compile: restore the optimizer and loss too.
        safe_mode: refuse lambda layers and other code in the file (keep True for files you
            did not write).
    """
    import keras

    register_custom_objects()
    return keras.saving.load_model(os.fspath(path), compile=compile, safe_mode=safe_mode)


class _RegisterWhenKerasIsImported(importlib.abc.MetaPathFinder):
    """Registers our custom objects once Keras is imported, without importing it ourselves.

    It watches the imports of `keras` and of our own modules, and registers after the first
    one to finish at a moment when Keras is imported and none of our modules is half-way
    through its own import (registering then would re-enter a partly imported module).
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" and not fullname.startswith(__name__ + "."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register_when_ready(finished=module)

    def __getattr__(self, name):  # whatever else the wrapped loader offers (resources, ...)
        return getattr(self._loader, name)


def _initializing(module) -> bool:
    # importlib marks a module's spec `_initializing` while its body runs.
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def _register_when_ready(finished=None) -> None:
    """Register unless Keras or one of our modules is still importing (`finished`: the module
    whose body just ran; importlib clears its flag only after this returns)."""

    def importing(module):
        return module is not finished and _initializing(module)

    if "keras" not in sys.modules or importing(sys.modules["keras"]):
        return
    for name, module in list(sys.modules.items()):
        if name.startswith(__name__ + ".") and importing(module):
            return
    for finder in [f for f in sys.meta_path if isinstance(f, _RegisterWhenKerasIsImported)]:
        sys.meta_path.remove(finder)
    # A failure here must not break the user's `import keras`; `load_model` re-raises it.
    try:
        register_custom_objects()
    except Exception as error:  # pragma: no cover - only on a broken installation
        logging.getLogger(__name__).warning("contrastive: custom objects not registered: %s", error)


if "keras" in sys.modules:
    _register_when_ready()
elif not any(isinstance(finder, _RegisterWhenKerasIsImported) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenKerasIsImported())
