"""Defaults that fit the data: the batch size, the steps per epoch and the kNN neighbourhood
a run uses when the user did not set them.

A profile's values are tuned for its data set (`quick`: batch 256 for Fashion-MNIST's 54,000
training images). On a folder of a few hundred photos the same batch is larger than the
training set: one step per epoch, and a linear probe that has not converged after its two
epochs (66.7 % on 3 x 80 photos where a batch of 32 scores 100 %). The rule, for `N`
training images (after `data.limit`) in `K` classes:

- **batch size**: the largest power of two that makes a pass over the training set at least
  `MIN_STEPS_PER_EPOCH` batches long, but not below `MIN_BATCH` (nor above `N`): 32 for a
  few hundred or a thousand images, 128 for 4,000;
- **steps per epoch**: at least `MIN_STEPS_PER_EPOCH`; a shorter pass (fewer than
  `MIN_STEPS_PER_EPOCH x MIN_BATCH` = 512 images) is repeated, in a new shuffled order, to
  fill them (`train.min_steps_per_epoch`), so an epoch of a small set still gives the
  optimizer and its schedule that many steps;
- **kNN neighbours** (`train.knn_k`): at most half of a class's mean count in the kNN
  sample, `min(N, knn_max_examples) / (2 K)`: with more neighbours than a class holds, even
  perfectly separated features are outvoted by other classes.

A value is only ever lowered (batch, k) or raised (steps) from the profile's, so a profile
tuned for a large set keeps its values there (Fashion-MNIST under `quick` and `few-labels`
is unchanged). A field the user set (a flag, an `--override`, a pipeline parameter, or a
profile *file* of their own: `config.explicit_fields`) is kept as given; so is every field
under `train.fit_to_data: false`. `fit_to_data` returns the notes the steps log.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contrastive import validation

if TYPE_CHECKING:
    from contrastive.config import Config

MIN_STEPS_PER_EPOCH = 16
MIN_BATCH = 32
# The fields the rule may change, as `config.explicit_fields` names them.
FITTED_FIELDS = ("train.batch_size", "train.min_steps_per_epoch", "train.knn_k")


@dataclass(frozen=True)
class DataSize:
    """What the rule needs to know of a dataset."""

    train: int  # examples of the train split (before `data.limit`)
    classes: int

    @classmethod
    def of_manifest(cls, manifest: Mapping[str, Any]) -> DataSize:
        """From an ingested dataset's `manifest.json` (as a dict)."""
        train = manifest["splits"].get("train", {}).get("num_examples", 0)
        return cls(int(train), int(manifest["num_classes"]))


def fit_to_data(
    config: Config, size: DataSize, explicit: Collection[str] = ()
) -> tuple[Config, list[str]]:
    """`config` with the fields of `FITTED_FIELDS` not in `explicit` fitted to `size` (see
    the module docstring), and one note per field it changed (`"train.batch_size 256 -> 32:
    ..."`), for the log. Unchanged under `train.fit_to_data: false`."""
    validation.check_int("size.train", size.train, minimum=0)
    validation.check_int("size.classes", size.classes)
    train = config.train
    if not train.fit_to_data or size.train == 0:
        return config, []
    count = size.train if config.data.limit is None else min(size.train, config.data.limit)
    changes: dict[str, int] = {}
    notes: list[str] = []

    def change(field: str, value: int, why: str) -> None:
        old = getattr(train, field.split(".")[1])
        if field not in explicit and value != old:
            changes[field] = value
            notes.append(f"{field} {old} -> {value}: {why}")

    floor = min(MIN_BATCH, _power_of_two_at_most(count))
    batch = min(train.batch_size, max(floor, _power_of_two_at_most(count // MIN_STEPS_PER_EPOCH)))
    change(
        "train.batch_size",
        batch,
        f"{count:,} training images in passes of {MIN_STEPS_PER_EPOCH} batches or more, "
        f"a power of two >= {floor}",
    )
    batch = changes.get("train.batch_size", train.batch_size)
    per_pass = -(-count // batch)
    if per_pass < MIN_STEPS_PER_EPOCH:
        change(
            "train.min_steps_per_epoch",
            max(train.min_steps_per_epoch, MIN_STEPS_PER_EPOCH),
            f"a pass is {per_pass} batches of {batch}; an epoch repeats it to "
            f"{MIN_STEPS_PER_EPOCH} steps",
        )
    sample = min(count, train.knn_max_examples)
    neighbours = max(1, sample // (2 * size.classes))
    change(
        "train.knn_k",
        min(train.knn_k, neighbours),
        f"half a class of the kNN sample ({sample:,} images, {size.classes} classes)",
    )
    return (config.replace(changes) if changes else config), notes


def _power_of_two_at_most(value: int) -> int:
    """The largest power of two <= `value`, at least 2 (the smallest batch SupCon takes)."""
    return max(2, 1 << (max(value, 1).bit_length() - 1))
