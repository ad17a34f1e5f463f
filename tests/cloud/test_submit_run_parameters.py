"""`submit` and `schedule` refuse what the run's tasks would refuse (profile, overrides, every
pipeline value) before any request, against the loopback KFP and Vertex fakes; the compiled
pipeline's defaults keep the profile's classifier mode."""

import argparse

import pytest

from pipelines.cli import cloud as cloud_cli
from tests.pipeline.compiled import flat_tasks

from .conftest import PROJECT, REGION

IMAGE = "us-docker.pkg.dev/p/ml/contrastive:abc"


def _parser():
    parser = argparse.ArgumentParser(prog="contrastive")
    cloud_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


@pytest.fixture(scope="module")
def contrastive_packages(tmp_path_factory):
    from kfp import compiler

    from pipelines.dag import build_pipeline

    folder = tmp_path_factory.mktemp("contrastive")
    paths = {}
    for target in ("kubeflow", "vertex"):
        paths[target] = str(folder / f"pipeline-{target}.yaml")
        compiler.Compiler().compile(build_pipeline(image=IMAGE, target=target), paths[target])
    return paths


BAD_PARAMS = [
    ("profile: fulll\n", "unknown profile 'fulll'"),
    ("epochs: -3\n", "epochs must be an integer >= 0. Received: epochs=-3"),
    (
        "encoder: resnet19\n",
        "encoder must be one of ['', 'small_cnn', 'simclr_cnn', 'resnet18', 'resnet50v2']. "
        "Received: encoder='resnet19'",
    ),
    ("overrides: 'train.epochs=[1'\n", "overrides must be a JSON or YAML mapping"),
    ("overrides: '{\"train.epochs\": [1'\n", "overrides must be a JSON or YAML mapping"),
    ("classifier_mode: probe\n", "Received: classifier_mode='probe'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_PARAMS)
def test_submit_kubeflow_refuses_bad_values_before_any_request(
    text, message, kfp_api, contrastive_packages, tmp_path, capsys
):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    args = _parser().parse_args(
        ["submit", "--target", "kubeflow", "--package", contrastive_packages["kubeflow"]]
        + ["--host", kfp_api.url, "--params", str(params)]
    )

    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: pipeline parameters of {contrastive_packages['kubeflow']!r}: ")
    assert message in err
    assert kfp_api.requests == []


def test_submit_with_the_issues_params_file_exits_2_before_any_request(
    kfp_api, vertex_api, contrastive_packages, tmp_path, capsys
):
    params = tmp_path / "params.yaml"
    params.write_text("profile: fulll\nepochs: -3\nencoder: resnet19\n")
    for target, where in (
        ("kubeflow", ["--host", kfp_api.url]),
        ("vertex", ["--project", PROJECT, "--region", REGION, "--pipeline-root", "gs://b/r"]),
    ):
        args = _parser().parse_args(
            ["submit", "--target", target, "--package", contrastive_packages[target]]
            + where
            + ["--params", str(params)]
        )
        assert args.func(args) == 2
        assert "epochs must be an integer >= 0. Received: epochs=-3" in capsys.readouterr().err
    assert kfp_api.requests == [] and vertex_api.requests == []


def test_schedule_refuses_bad_values_before_any_request(
    kfp_api, contrastive_packages, tmp_path, capsys
):
    params = tmp_path / "params.yaml"
    params.write_text("encoder: resnet19\n")
    args = _parser().parse_args(
        ["schedule", "--target", "kubeflow", "--package", contrastive_packages["kubeflow"]]
        + ["--host", kfp_api.url, "--params", str(params)]
        + ["--cron", "0 0 3 * * 1", "--schedule-name", "weekly"]
    )

    assert args.func(args) == 2
    assert "Received: encoder='resnet19'" in capsys.readouterr().err
    assert kfp_api.requests == []


def test_compiled_defaults_keep_the_profiles_classifier_mode(
    contrastive_packages, monkeypatch, tmp_path
):
    """seed-stl10-simclr fine-tunes (seed 003): the classifier task, fed the compiled
    pipeline's defaults, must train with mode finetune, not a hidden 'linear' default."""
    from kfp import dsl

    import components
    from contrastive import tasks, training
    from pipelines.package import load_package, run_values

    package = load_package(contrastive_packages["vertex"])
    spec = package.spec
    values = run_values(package, {"profile": "seed-stl10-simclr"})
    (task,) = [
        body
        for body in flat_tasks(spec).values()
        if body["taskInfo"]["name"] == "classifier-simclr"
    ]
    inputs = task["inputs"]["parameters"]
    arguments = {
        name: values[source["componentInputParameter"]]
        for name, source in inputs.items()
        if "componentInputParameter" in source
    }
    assert arguments["mode"] == ""  # left unset: the profile decides

    class Captured(Exception):
        pass

    def train_classifier(config, encoder, *splits, mode, **kwargs):
        raise Captured(mode)

    def train_step(name, data_uri, output_dir, config, fit, summarize, **kwargs):
        fit(config, None, None)

    monkeypatch.setattr(training, "train_classifier", train_classifier)
    monkeypatch.setattr(tasks.training, "_train_step", train_step)
    monkeypatch.setattr(tasks.training, "load_model_dir", lambda path: (None, {"method": "simclr"}))
    # The reuse guard (issue 29) names the step's inputs by content before training: the
    # encoder's info.json and digest, the dataset's manifest. None exists here.
    monkeypatch.setattr(tasks.training, "read_json", lambda path: {"method": "simclr"})
    monkeypatch.setattr(tasks.training.modeldir, "model_digest", lambda path: "digest")
    monkeypatch.setattr(tasks.training, "_request", lambda step, config, data_uri, **kw: kw)
    # The fitted defaults (issue 27) read the dataset's size from its manifest: none here.
    monkeypatch.setattr(tasks.training.conventions, "data_size", lambda dataset: None)
    # finetune streams its labelled subset (issue 23) before training: nothing to stream here.
    monkeypatch.setattr(tasks.training, "_labelled_stream", lambda data_uri, config: None)
    component = components.build(IMAGE).train_classifier.python_func
    with pytest.raises(Captured) as caught:
        component(
            dataset=dsl.Dataset(uri=str(tmp_path / "dataset")),
            encoder_model=dsl.Model(uri=str(tmp_path / "encoder")),
            model=dsl.Model(uri=str(tmp_path / "model")),
            metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
            **{k: v for k, v in arguments.items() if k in ("mode", "profile", "overrides")},
        )
    assert str(caught.value) == "finetune"
