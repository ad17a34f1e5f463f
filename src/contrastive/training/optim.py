"""Optimisers and learning-rate schedules from `TrainConfig`, and the mixed-precision scope."""

import contextlib
import logging

import keras

from contrastive import validation

log = logging.getLogger(__name__)

# `train.mixed_precision` value -> Keras dtype policy name.
_POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def build_learning_rate(train_cfg, steps_per_epoch, epochs, learning_rate):
    """The learning rate (a float or a schedule) for `epochs` of `steps_per_epoch` steps.

    `train_cfg.schedule`:
    - `"constant"`: `learning_rate` throughout.
    - `"cosine"`: linear warm-up from 0 to `learning_rate` over
      `W = round(train_cfg.warmup_epochs * steps_per_epoch)` steps, then cosine decay to 0
      over the remaining `T - W` steps (`T = steps_per_epoch * epochs`):

          lr(s) = learning_rate * s / W                                  for s < W
          lr(s) = learning_rate * 0.5 * (1 + cos(pi * (s - W) / (T - W)))  for W <= s <= T

      `warmup_epochs` is validated against the pretraining epochs; when a shorter run (the
      classifier) would spend more than half of its steps warming up, the warm-up is cut to
      half of the run.

    Args:
        train_cfg: `TrainConfig` (uses `schedule`, `warmup_epochs`).
        steps_per_epoch: optimiser steps per epoch, >= 1.
        epochs: epochs of this run, >= 1.
        learning_rate: peak learning rate, > 0.

    Returns:
        A float or a `keras.optimizers.schedules.CosineDecay`.
    """
    validation.check_int("steps_per_epoch", steps_per_epoch)
    validation.check_int("epochs", epochs)
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate must be > 0. Received: learning_rate={learning_rate!r}")
    learning_rate = float(learning_rate)
    if train_cfg.schedule == "constant":
        return learning_rate
    if train_cfg.schedule != "cosine":
        raise ValueError(
            f"schedule must be 'constant' or 'cosine'. Received: schedule={train_cfg.schedule!r}"
        )
    total_steps = steps_per_epoch * epochs
    warmup_steps = int(round(train_cfg.warmup_epochs * steps_per_epoch))
    if warmup_steps > total_steps // 2:
        log.info(
            "warm-up of %d steps is more than half of this run's %d steps; using %d",
            warmup_steps,
            total_steps,
            total_steps // 2,
        )
        warmup_steps = total_steps // 2
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps)
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=total_steps - warmup_steps,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )


def build_optimizer(train_cfg, steps_per_epoch, epochs, learning_rate):
    """The optimiser named by `train_cfg.optimizer` with the schedule of `build_learning_rate`.

    - `"adam"`: `Adam`, or `AdamW` (decoupled weight decay) when `weight_decay > 0`.
    - `"sgd"`: `SGD` with `momentum` and, when `weight_decay > 0`, Keras' decoupled weight
      decay (`w -= lr * weight_decay * w` each step).

    Under a `mixed_float16` model policy `compile` wraps it in a `LossScaleOptimizer`.

    Args:
        train_cfg: `TrainConfig` (uses `optimizer`, `momentum`, `weight_decay`, `schedule`,
            `warmup_epochs`).
        steps_per_epoch: optimiser steps per epoch, >= 1.
        epochs: epochs of this run, >= 1.
        learning_rate: peak learning rate, > 0.

    Returns:
        A `keras.optimizers.Optimizer`.
    """
    rate = build_learning_rate(train_cfg, steps_per_epoch, epochs, learning_rate)
    weight_decay = float(train_cfg.weight_decay)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0. Received: weight_decay={weight_decay}")
    if train_cfg.optimizer == "adam":
        if weight_decay > 0:
            return keras.optimizers.AdamW(learning_rate=rate, weight_decay=weight_decay)
        return keras.optimizers.Adam(learning_rate=rate)
    if train_cfg.optimizer == "sgd":
        return keras.optimizers.SGD(
            learning_rate=rate,
            momentum=float(train_cfg.momentum),
            weight_decay=weight_decay if weight_decay > 0 else None,
        )
    raise ValueError(
        f"optimizer must be 'adam' or 'sgd'. Received: optimizer={train_cfg.optimizer!r}"
    )


@contextlib.contextmanager
def precision_policy(mixed_precision):
    """Builds the layers created inside under a mixed-precision dtype policy.

    Keras reads the policy when a layer is created, so models built inside keep it after the
    block; the previous global policy is restored on exit, even on error.

    Args:
        mixed_precision: `None` (leave the policy alone), `"bfloat16"` or `"float16"`.
    """
    if mixed_precision is None:
        yield
        return
    if mixed_precision not in _POLICIES:
        raise ValueError(
            "mixed_precision must be None, 'bfloat16' or 'float16'. "
            f"Received: mixed_precision={mixed_precision!r}"
        )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
