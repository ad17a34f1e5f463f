"""Optimisers and learning-rate schedules from `TrainConfig`, and the mixed-precision scope
with the machine's choice for `train.mixed_precision: auto`."""

import contextlib
import functools
import logging
from pathlib import Path

import keras

from contrastive import validation

log = logging.getLogger(__name__)

# Resolved `train.mixed_precision` value -> Keras dtype policy name.
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# `/proc/cpuinfo` flags of native bfloat16 arithmetic, which oneDNN (TensorFlow's CPU kernels)
# uses: AVX512-BF16 (Cooper Lake, Zen 4/5) and AMX (Sapphire Rapids and later).
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# NVIDIA GPUs compute natively in bfloat16 from compute capability 8.0 (Ampere) on.
_BFLOAT16_MIN_COMPUTE_CAPABILITY = (8, 0)


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


def cpu_bfloat16_flags(cpuinfo: str) -> list[str]:
    """The native-bfloat16 flags (`BFLOAT16_CPU_FLAGS`) that a `/proc/cpuinfo` text lists.

    Args:
        cpuinfo: the text of `/proc/cpuinfo` (x86: one `flags : ...` line per core).

    Returns:
        The flags found, in `BFLOAT16_CPU_FLAGS` order; empty when the CPU has none.
    """
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return [flag for flag in BFLOAT16_CPU_FLAGS if flag in flags]


def resolve_mixed_precision(
    setting, *, backend: str, accelerator: dict | None = None, cpuinfo: str = ""
) -> tuple[str, str]:
    """The compute precision a `train.mixed_precision` setting means on a machine.

    An explicit value is kept (`None`, the older spelling of float32, becomes `"float32"`).
    `"auto"` picks:

    - on a GPU: `"bfloat16"` from compute capability 8.0 (Ampere, Hopper) on, else `"float32"`;
      on a TPU: `"bfloat16"`;
    - on a CPU with the TensorFlow backend: `"bfloat16"` when `cpuinfo` lists native bfloat16
      (`avx512_bf16` or `amx_bf16`: 1.76x the float32 throughput on small_cnn, no accuracy
      cost, docs/BENCHMARKS.md), else `"float32"` (emulated bfloat16 is slower);
    - on a CPU with any other backend: `"float32"` (under JAX, XLA's CPU bfloat16 was slower
      than float32 even with `avx512_bf16`: 1,057 against 1,182 views/s).

    Args:
        setting: `"auto"`, `"float32"`, `"bfloat16"`, `"float16"` or `None`.
        backend: Keras backend name (`keras.backend.backend()`).
        accelerator: `{"platform": "gpu"|"tpu", "compute_capability": (major, minor) or
            None}` of the first accelerator, or None when training runs on the CPU.
        cpuinfo: the text of `/proc/cpuinfo` ("" when unknown).

    Returns:
        `(precision, reason)`: `"float32"`, `"bfloat16"` or `"float16"`, and why, for the log.
    """
    if setting is None:
        return "float32", "train.mixed_precision=null"
    if setting in _POLICIES:
        return setting, f"train.mixed_precision={setting}"
    if setting != "auto":
        raise ValueError(
            "mixed_precision must be 'auto', 'float32', 'bfloat16', 'float16' or None. "
            f"Received: mixed_precision={setting!r}"
        )
    if accelerator is not None:
        platform = accelerator.get("platform")
        if platform == "tpu":
            return "bfloat16", "auto: TPU"
        capability = accelerator.get("compute_capability")
        if capability is None:
            return "float32", "auto: GPU of unknown compute capability"
        if tuple(capability) >= _BFLOAT16_MIN_COMPUTE_CAPABILITY:
            return "bfloat16", f"auto: GPU of compute capability {_dotted(capability)}"
        return "float32", f"auto: GPU of compute capability {_dotted(capability)} (< 8.0)"
    flags = cpu_bfloat16_flags(cpuinfo)
    if backend != "tensorflow":
        return "float32", f"auto: CPU under {backend} (bfloat16 is slower there)"
    if flags:
        return "bfloat16", f"auto: this CPU has native bfloat16 ({', '.join(flags)})"
    return "float32", "auto: this CPU has no native bfloat16 (avx512_bf16 or amx_bf16)"


def machine_mixed_precision(setting) -> tuple[str, str]:
    """`resolve_mixed_precision` for this process: Keras' backend, its first accelerator and
    `/proc/cpuinfo` (looked up once per process)."""
    if setting != "auto":
        return resolve_mixed_precision(setting, backend=keras.backend.backend())
    return resolve_mixed_precision(setting, **_machine())


@functools.cache
def _machine() -> dict:
    backend = keras.backend.backend()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags, float32 on the CPU
        cpuinfo = ""
    return {"backend": backend, "accelerator": _accelerator(backend), "cpuinfo": cpuinfo}


def _accelerator(backend: str) -> dict | None:
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "cpu":
            return None
        capability = getattr(device, "compute_capability", None)
        return {"platform": device.platform, "compute_capability": _capability(capability)}
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        details = tf.config.experimental.get_device_details(gpus[0])
        return {
            "platform": "gpu",
            "compute_capability": _capability(details.get("compute_capability")),
        }
    return None


def _capability(value) -> tuple[int, int] | None:
    """`"9.0"` (JAX) or `(9, 0)` (TensorFlow) -> `(9, 0)`; None when unknown."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(".")
    try:
        return tuple(int(part) for part in value)[:2]
    except (TypeError, ValueError):
        return None


def _dotted(capability) -> str:
    return ".".join(str(part) for part in capability)


@contextlib.contextmanager
def precision_policy(mixed_precision):
    """Builds the layers created inside under a mixed-precision dtype policy.

    Keras reads the policy when a layer is created, so models built inside keep it after the
    block; the previous global policy is restored on exit, even on error.

    Args:
        mixed_precision: `"float32"` or `None` (float32), `"bfloat16"`, `"float16"`, or
            `"auto"` (this machine's choice, `machine_mixed_precision`).
    """
    precision, _ = machine_mixed_precision(mixed_precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
