"""Distribution settings: process start-up from the launcher's environment, layout, data
slices, learning-rate scaling, and the refusals (each naming the value). The training
equivalences themselves (8 devices, 2 processes) are in tests/distributed."""

import json
import math

import keras
import numpy as np
import pytest

from contrastive import environment
from contrastive.config import ConfigError, load_config
from contrastive.training import distribution
from contrastive.training.distribution import DistributionError, Layout, ProcessGroup

VERTEX_SPEC = {
    "cluster": {
        "workerpool0": ["cmle-training-workerpool0-1a2b-0:2222"],
        "workerpool1": [
            "cmle-training-workerpool1-1a2b-0:2222",
            "cmle-training-workerpool1-1a2b-1:2222",
        ],
    },
    "environment": "cloud",
    "task": {"type": "workerpool1", "index": 1},
}


def test_explicit_settings_make_the_group():
    group = environment.process_group(
        {"JAX_PROCESS_ID": "7"}, coordinator="10.0.0.1:1234", num_processes=4, process_id=3
    )
    assert group == ProcessGroup("10.0.0.1:1234", 4, 3, "flags")


def test_vertex_cluster_spec_numbers_workerpool0_then_workerpool1():
    group = environment.process_group({"CLUSTER_SPEC": json.dumps(VERTEX_SPEC)})
    assert group == ProcessGroup("cmle-training-workerpool0-1a2b-0:2222", 3, 2, "CLUSTER_SPEC")
    primary = dict(VERTEX_SPEC, task={"type": "workerpool0", "index": 0})
    assert environment.process_group({"CLUSTER_SPEC": json.dumps(primary)}).process_id == 0


def test_kubeflow_trainer_jax_variables_make_the_group():
    environ = {
        "JAX_COORDINATOR_ADDRESS": "job-node-0-0.job:6666",
        "JAX_NUM_PROCESSES": "2",
        "JAX_PROCESS_ID": "1",
    }
    group = environment.process_group(environ)
    assert group == ProcessGroup("job-node-0-0.job:6666", 2, 1, "kubeflow-trainer")


def test_no_settings_mean_one_process():
    assert environment.process_group({"HOME": "/root"}) is None


@pytest.mark.parametrize(
    ("environ", "flags", "message"),
    [
        (
            {},
            {"coordinator": "10.0.0.1:1234"},
            "--coordinator, --num-processes and --process-id go together; missing "
            "--num-processes, --process-id. Received: coordinator='10.0.0.1:1234', "
            "num_processes=None, process_id=None",
        ),
        (
            {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
            {},
            "Kubeflow Trainer JAX settings are partial: JAX_COORDINATOR_ADDRESS not set. "
            "Received: JAX_COORDINATOR_ADDRESS=None, JAX_NUM_PROCESSES='2', JAX_PROCESS_ID='0'",
        ),
        (
            {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
            {},
            "JAX_NUM_PROCESSES must be an integer. Received: JAX_NUM_PROCESSES='two'",
        ),
        (
            {},
            {"coordinator": "10.0.0.1", "num_processes": 2, "process_id": 0},
            "the coordinator must be host:port (flags). Received: coordinator='10.0.0.1'",
        ),
        (
            {},
            {"coordinator": "h:1", "num_processes": 2, "process_id": 2},
            "the process id must be in [0, 2) (flags). Received: process_id=2",
        ),
        (
            {},
            {"coordinator": "h:1", "num_processes": 0, "process_id": 0},
            "the process count must be an int >= 1 (flags). Received: num_processes=0",
        ),
        (
            {"CLUSTER_SPEC": json.dumps(dict(VERTEX_SPEC, task={"type": "workerpool2"}))},
            {},
            None,  # the KeyError on "index" names the spec
        ),
        (
            {
                "CLUSTER_SPEC": json.dumps(
                    dict(VERTEX_SPEC, task={"type": "workerpool2", "index": 0})
                )
            },
            {},
            "this replica's pool does not train (only workerpool0, workerpool1 do). "
            "Received: task.type='workerpool2'",
        ),
        (
            {"CLUSTER_SPEC": "{not json"},
            {},
            None,
        ),
    ],
)
def test_bad_or_partial_settings_are_refused_naming_the_value(environ, flags, message):
    with pytest.raises(DistributionError) as raised:
        environment.process_group(environ, **flags)
    if message is None:
        assert str(raised.value).startswith("CLUSTER_SPEC must be JSON")
        assert f"Received: CLUSTER_SPEC={environ['CLUSTER_SPEC']!r}" in str(raised.value)
    else:
        assert str(raised.value) == message


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("none", 0.1), ("linear", 0.1 * 4096 / 256), ("sqrt", 0.1 * math.sqrt(16))],
)
def test_learning_rate_scales_with_the_global_batch(rule, expected):
    config = load_config("tiny", [f"train.lr_scaling={rule}", "train.batch_size=4096"])
    assert distribution.scaled_learning_rate(0.1, config.train) == pytest.approx(expected)


def test_unknown_distribution_and_scaling_are_config_errors():
    with pytest.raises(ConfigError, match=r"Received: train.distribution='ddp'"):
        load_config("tiny", ["train.distribution=ddp"])
    with pytest.raises(ConfigError, match=r"Received: train.lr_scaling='log'"):
        load_config("tiny", ["train.lr_scaling=log"])


def _layout(processes, index, batch):
    devices = 2 * processes
    return Layout("data_parallel", processes, index, devices, 2, batch, batch // processes, 2)


def test_each_process_takes_its_own_equal_slice_of_whole_batches():
    x = np.arange(103)[:, None, None, None]
    y = np.arange(103)
    slices = [distribution.process_slice(x, y, _layout(3, index, 12)) for index in range(3)]
    taken = [set(part[1]) for part in slices]
    assert [len(part[1]) for part in slices] == [32, 32, 32]  # 34 each, cut to 8 batches of 4
    assert not (taken[0] & taken[1] or taken[0] & taken[2] or taken[1] & taken[2])
    assert all((part[0][:, 0, 0, 0] == part[1]).all() for part in slices)  # rows stay paired
    one = distribution.process_slice(x[:96], y[:96], _layout(1, 0, 32))
    np.testing.assert_array_equal(one[1], y[:96])  # one process: everything, in order


def test_fewer_examples_than_a_global_batch_is_refused():
    with pytest.raises(DistributionError) as raised:
        distribution.process_slice(np.zeros((10, 1, 1, 1)), np.zeros(10), _layout(2, 0, 16))
    assert str(raised.value) == (
        "10 examples are fewer than one global batch of 16. Received: train.batch_size=16"
    )


@pytest.mark.backend
def test_layout_on_this_backend():
    none = distribution.plan_layout(load_config("tiny").train)
    assert none == Layout("none", 1, 0, 1, 1, 64, 64, 64)
    config = load_config("tiny", ["train.distribution=data_parallel"])
    if keras.backend.backend() != "jax":
        with pytest.raises(DistributionError) as raised:
            distribution.plan_layout(config.train)
        assert str(raised.value) == (
            "data-parallel training (train.distribution=data_parallel) runs on the JAX "
            "backend only: set KERAS_BACKEND=jax. On TensorFlow, Keras computes the loss per "
            "replica, so the contrastive loss would not see the global batch. "
            f"Received: backend={keras.backend.backend()!r}"
        )
        return
    import jax

    layout = distribution.plan_layout(config.train)
    assert (layout.devices, layout.processes, layout.global_batch) == (jax.device_count(), 1, 64)
    assert layout.per_device_batch * layout.devices == 64


def test_cli_refuses_partial_process_flags_before_reading_data(tmp_path, capsys):
    from pipelines.cli import main

    code = main(
        ["pretrain", "--data", str(tmp_path / "absent"), "--output", str(tmp_path / "out")]
        + ["--profile", "tiny", "--num-processes", "2"]
    )
    assert code == 2
    assert "missing --coordinator, --process-id" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_several_processes_without_data_parallel(tmp_path, capsys, monkeypatch):
    from pipelines.cli import main

    monkeypatch.setenv("CLUSTER_SPEC", json.dumps(VERTEX_SPEC))
    code = main(
        ["pretrain", "--data", str(tmp_path / "absent"), "--output", str(tmp_path / "out")]
        + ["--profile", "tiny"]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "error: 3 processes (CLUSTER_SPEC) need train.distribution=data_parallel, else each "
        "would train its own model. Received: train.distribution='none'"
    )
