"""`train.mixed_precision`: the CPU flag check, what `auto` resolves to, and what is recorded."""

import json

import keras
import pytest

from contrastive import modeldir, tasks
from contrastive.config import ConfigError, load_config
from contrastive.models import find_encoder
from contrastive.report import method_summary
from contrastive.training import optim
from contrastive.training.optim import (
    cpu_bfloat16_flags,
    precision_policy,
    resolve_mixed_precision,
)

# Abridged /proc/cpuinfo of real CPUs (two cores each; the flags lines cut to the relevant part).
ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B45
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 avx512_vbmi2
bugs\t\t: sysret_ss_attrs

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B45
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 avx512_vbmi2
"""
# Sapphire Rapids lists both; a CPU with AMX but the AVX512-BF16 flag masked by a hypervisor:
AMX_ONLY = """processor\t: 0
flags\t\t: fpu avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8
"""
SAPPHIRE_RAPIDS = """processor\t: 0
flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
ICE_LAKE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8375C avx512_bf16-free edition
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16x amx_tile
"""


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [
        (ZEN5, ["avx512_bf16"]),
        (AMX_ONLY, ["amx_bf16"]),
        (SAPPHIRE_RAPIDS, ["avx512_bf16", "amx_bf16"]),
        # whole flags only, and only on the flags line (not the model name)
        (ICE_LAKE, []),
        ("", []),
        ("processor\t: 0\nFeatures\t: fp asimd bf16\n", []),  # arm64: not a flag we use
    ],
    ids=["zen5", "amx-only", "sapphire-rapids", "ice-lake", "empty", "arm64"],
)
def test_cpu_bfloat16_flags_reads_whole_flags_of_the_flags_lines(cpuinfo, expected):
    assert cpu_bfloat16_flags(cpuinfo) == expected


def gpu(capability):
    return {"platform": "gpu", "compute_capability": capability}


@pytest.mark.parametrize(
    "machine, expected",
    [
        ({"backend": "tensorflow", "cpuinfo": ZEN5}, "bfloat16"),
        ({"backend": "tensorflow", "cpuinfo": AMX_ONLY}, "bfloat16"),
        ({"backend": "tensorflow", "cpuinfo": ICE_LAKE}, "float32"),
        ({"backend": "tensorflow", "cpuinfo": ""}, "float32"),
        ({"backend": "jax", "cpuinfo": ZEN5}, "float32"),  # slower under XLA on the CPU
        ({"backend": "jax", "accelerator": gpu((9, 0))}, "bfloat16"),
        ({"backend": "jax", "accelerator": gpu((8, 0))}, "bfloat16"),
        ({"backend": "tensorflow", "accelerator": gpu((7, 5)), "cpuinfo": ZEN5}, "float32"),
        ({"backend": "jax", "accelerator": gpu(None)}, "float32"),
        ({"backend": "jax", "accelerator": {"platform": "tpu"}}, "bfloat16"),
    ],
)
def test_auto_resolves_by_backend_device_and_cpu_flags(machine, expected):
    precision, reason = resolve_mixed_precision("auto", **machine)
    assert precision == expected
    assert reason.startswith("auto: ")


@pytest.mark.parametrize("setting", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("cpuinfo", [ZEN5, ""], ids=["zen5", "empty"])
def test_explicit_values_are_kept_whatever_the_machine(setting, cpuinfo):
    for accelerator in (None, gpu((9, 0))):
        assert resolve_mixed_precision(
            setting, backend="tensorflow", accelerator=accelerator, cpuinfo=cpuinfo
        ) == (setting, f"train.mixed_precision={setting}")
    # null, the spelling before `auto` existed, still means float32
    assert resolve_mixed_precision(None, backend="tensorflow", cpuinfo=ZEN5)[0] == "float32"


def test_bad_setting_is_refused_by_the_config_and_the_resolver():
    with pytest.raises(ValueError, match="Received: mixed_precision='fp8'"):
        resolve_mixed_precision("fp8", backend="tensorflow")
    with pytest.raises(ConfigError, match="train.mixed_precision"):
        load_config("tiny", ["train.mixed_precision=fp8"])


def test_profiles_default_to_auto_and_full_keeps_bfloat16():
    assert load_config("quick").train.mixed_precision == "auto"
    assert load_config("tiny").train.mixed_precision == "float32"  # tests compare float32
    assert load_config("full").train.mixed_precision == "bfloat16"
    assert load_config("quick", ["train.mixed_precision=float32"]).train.mixed_precision == (
        "float32"
    )


@pytest.fixture
def fake_machine(monkeypatch):
    """Makes `auto` see the given CPU (TensorFlow backend, no accelerator)."""

    def use(cpuinfo):
        machine = {"backend": "tensorflow", "accelerator": None, "cpuinfo": cpuinfo}
        monkeypatch.setattr(optim, "_machine", lambda: machine)

    return use


@pytest.mark.parametrize(
    "cpuinfo, policy", [(ZEN5, "mixed_bfloat16"), ("", "float32")], ids=["zen5", "empty"]
)
def test_precision_policy_auto_builds_in_the_machines_choice(fake_machine, cpuinfo, policy):
    fake_machine(cpuinfo)
    before = keras.config.dtype_policy().name
    with precision_policy("auto"):
        layer = keras.layers.Dense(2)
    assert layer.dtype_policy.name == policy
    assert keras.config.dtype_policy().name == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "cpuinfo, setting, expected",
    [(ZEN5, "auto", "bfloat16"), ("", "auto", "float32"), (ZEN5, "float32", "float32")],
    ids=["zen5-auto", "empty-auto", "zen5-float32"],
)
def test_training_step_records_the_precision_up_to_the_summary(
    tiny_dataset, tmp_path, fake_machine, caplog, cpuinfo, setting, expected
):
    fake_machine(cpuinfo)
    config = load_config("tiny", [f"train.mixed_precision={setting}", "train.checkpoint_every=0"])
    output = tmp_path / "baseline"
    with caplog.at_level("INFO", logger="contrastive.tasks"):
        tasks.run_train_baseline(tiny_dataset, output, config)
    assert f"train_baseline: compute precision {expected} (" in caplog.text
    info = json.loads((output / "info.json").read_text())
    assert info["mixed_precision"] == expected
    model, _ = modeldir.load_model_dir(output)  # the saved model keeps its policy
    policy = "mixed_bfloat16" if expected == "bfloat16" else "float32"
    weighted_layers = [layer for layer in find_encoder(model).layers if layer.weights]
    assert weighted_layers and {layer.dtype_policy.name for layer in weighted_layers} == {policy}
    evaluation = tasks.run_evaluate(tiny_dataset, output, embedding_points=0)
    assert method_summary(evaluation)["mixed_precision"] == expected


@pytest.mark.parametrize(
    "reported, expected", [("9.0", (9, 0)), ((8, 6), (8, 6)), ("", None), (None, None)]
)
def test_compute_capability_of_jax_and_tensorflow_devices(reported, expected):
    # JAX reports "9.0", TensorFlow's device details (8, 6)
    assert optim._capability(reported) == expected
