"""The methods a run compares: one registry, from which every list of methods derives.

A method is a branch of the pipeline. The cross-entropy baseline is trained end to end
(`train_baseline`); every other method pretrains an encoder with its loss
(`pretrain-<name>`), then a classifier is trained on that encoder (`classifier-<name>`).
The DAG's branches, the compare and collect components' inputs, the report's order and
labels, the CLI's choices and `train.method`'s valid values all read this registry.

Adding a method is one module and one entry:

* its loss, a `contrastive.losses.ContrastiveLoss` (a `keras.losses.Loss`) whose
  `call(labels, projections)` takes `[batch]` int labels (None when the method uses none)
  and `[batch, views, dim]` projections and returns a float32 scalar, constructed as
  `Loss(temperature, base_temperature)` (`contrastive/losses.py` holds the built-in ones);
* a `Method` entry in `BUILT_IN` below, or, from another package, an entry point in the
  group `contrastive.methods` naming a `Method` (`pyproject.toml`:
  `[project.entry-points."contrastive.methods"] name = "package.module:METHOD"`); the
  registry loads those the first time it is read, in every process (CLI, pipeline tasks).

This module imports neither Keras nor TensorFlow: a `Method` names its loss as
`"module:Class"`, imported when a pretraining step builds it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ENTRY_POINT_GROUP = "contrastive.methods"
# The end-to-end cross-entropy method every run can compare against; its step is
# `train_baseline` (`contrastive.tasks.run_train_baseline`).
BASELINE = "baseline"
# A method's name becomes KFP input and task names (`<name>_evaluation`, `pretrain-<name>`).
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Method:
    """One method of the comparison.

    Args:
        name: its name in `--methods`, `train.method`, task names and results; lower-case
            letters, digits and `_`, starting with a letter.
        label: how the report names it.
        loss: `"module:Class"` of its pretraining loss; None for a method without one (the
            baseline, trained end to end).
        uses_labels: the loss reads labels; False: an image's only positives are its other
            views, so it needs `train.num_views >= 2` and no label reaches its encoder.
        views: how many of each image's views the loss sees (1: the first only); None: all
            `train.num_views`.
        pretrain_once: few labels (several labelled fractions): one encoder, pretrained on
            every image, serves every fraction's classifier; only for a method whose loss
            uses no label.
        end_to_end: trained by the baseline step (cross-entropy, no encoder step).
        default: one of the branches a run compiles when `--methods` is not given.
    """

    name: str
    label: str
    loss: str | None = None
    uses_labels: bool = True
    views: int | None = None
    pretrain_once: bool = False
    end_to_end: bool = False
    default: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                "a method's name must be lower-case letters, digits and _, starting with a "
                f"letter. Received: name={self.name!r}"
            )
        if self.loss is not None and (not isinstance(self.loss, str) or ":" not in self.loss):
            raise ValueError(
                f"method {self.name}: loss must be 'module:Class'. Received: loss={self.loss!r}"
            )
        if self.end_to_end and self.loss is not None:
            raise ValueError(
                f"method {self.name}: an end-to-end method has no pretraining loss. "
                f"Received: loss={self.loss!r}"
            )
        if self.pretrain_once and (self.uses_labels or self.end_to_end):
            raise ValueError(
                f"method {self.name}: pretrain_once shares one encoder between labelled "
                "fractions, so its loss must use no label (uses_labels=False). Received: "
                f"uses_labels={self.uses_labels}, end_to_end={self.end_to_end}"
            )
        if self.views is not None and (isinstance(self.views, bool) or self.views < 1):
            raise ValueError(f"method {self.name}: views must be >= 1. Received: {self.views!r}")

    @property
    def pretrains(self) -> bool:
        """Its branch has a pretraining step (`pretrain-<name>`) before the classifier."""
        return not self.end_to_end

    @property
    def min_views(self) -> int:
        """The fewest `train.num_views` it trains with: 2 when an image's only positives
        are its own other views."""
        return 1 if self.uses_labels else 2

    def build_loss(self, temperature: float, base_temperature: float | None = None):
        """Its `keras.losses.Loss`, `Class(temperature, base_temperature)` (imports Keras)."""
        if self.loss is None:
            raise ValueError(f"method {self.name} has no pretraining loss")
        module, _, attribute = self.loss.partition(":")
        loss_class = getattr(importlib.import_module(module), attribute)
        return loss_class(temperature, base_temperature)


BUILT_IN = (
    Method(BASELINE, "Cross-entropy baseline", end_to_end=True, default=True),
    Method("supcon", "SupCon", loss="contrastive.losses:SupConLoss", default=True),
    Method(
        "simclr",
        "SimCLR",
        loss="contrastive.losses:SimCLRLoss",
        uses_labels=False,
        pretrain_once=True,
        default=True,
    ),
    Method("npairs", "N-pairs (seeds' SupCon)", loss="contrastive.losses:NPairsLoss", views=1),
)

_registry: dict[str, Method] = {}
_plugins_loaded = False


def register(method: Method) -> Method:
    """Adds `method` to the registry (after the built-in ones and the entry points);
    registering an equal entry again is a no-op."""
    known = _methods()
    if not isinstance(method, Method):
        raise TypeError(f"register takes a Method. Received: {method!r}")
    if method.name in known and known[method.name] != method:
        raise ValueError(f"a different method is already registered as {method.name!r}")
    known[method.name] = method
    return method


def unregister(name: str) -> None:
    """Removes a method registered by `register` (tests); the built-in ones stay."""
    if name in {method.name for method in BUILT_IN}:
        raise ValueError(f"{name} is a built-in method")
    _methods().pop(name, None)


def all_methods() -> tuple[Method, ...]:
    """Every method, in the report's order: the built-in ones, then the added ones."""
    return tuple(_methods().values())


def names() -> tuple[str, ...]:
    return tuple(_methods())


def pretraining_names() -> tuple[str, ...]:
    """The methods that pretrain an encoder: the valid values of `train.method`."""
    return tuple(method.name for method in all_methods() if method.pretrains)


def default_names() -> tuple[str, ...]:
    """The branches a run compiles when none are named."""
    return tuple(method.name for method in all_methods() if method.default)


def get(name: str) -> Method:
    """The method called `name`; ValueError listing the known ones."""
    known = _methods()
    if name not in known:
        raise ValueError(f"method must be one of {list(known)}. Received: method={name!r}")
    return known[name]


def find(name) -> Method | None:
    """The method called `name`, or None (a report reading an older summary)."""
    return _methods().get(name) if isinstance(name, str) else None


def check_branches(selected: Sequence[str] | str) -> tuple[str, ...]:
    """The branches to compile: a non-empty subset of `names()`, given as a sequence or
    "a,b,c", duplicates dropped, order kept."""
    if isinstance(selected, str):
        selected = [name.strip() for name in selected.split(",") if name.strip()]
    known = names()
    if not selected or any(name not in known for name in selected):
        raise ValueError(
            f"methods must be a non-empty subset of {list(known)}. Received: {list(selected)}"
        )
    return tuple(dict.fromkeys(selected))


def _methods() -> dict[str, Method]:
    global _plugins_loaded
    if not _registry:
        _registry.update((method.name, method) for method in BUILT_IN)
    if not _plugins_loaded:
        _plugins_loaded = True  # set first: a plugin module may read the registry
        for method in _entry_point_methods():
            register(method)
    return _registry


def _entry_point_methods() -> Iterable[Method]:
    """The `Method` objects named by the installed entry points of `ENTRY_POINT_GROUP`."""
    from importlib.metadata import entry_points

    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            loaded = entry.load()
        except Exception as error:
            raise ImportError(
                f"the method plugin {entry.name} = {entry.value} (entry point group "
                f"{ENTRY_POINT_GROUP}) failed to load: {error}"
            ) from error
        found = loaded if isinstance(loaded, (list, tuple)) else [loaded]
        for method in found:
            if not isinstance(method, Method):
                raise TypeError(
                    f"the entry point {entry.name} = {entry.value} (group {ENTRY_POINT_GROUP}) "
                    f"must name a contrastive.methods.Method. Received: {method!r}"
                )
            yield method
