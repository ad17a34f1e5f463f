"""contrastive.tasks: parameter conventions, model directories, the semi-supervised path."""

import json

import numpy as np
import pytest

from contrastive import data, modeldir, tasks
from contrastive.config import ConfigError, resolve_config


def test_resolve_config_zero_and_empty_keep_the_profile():
    base = resolve_config("quick")
    same = resolve_config("quick", epochs=0, batch_size=0, temperature=0.0, encoder="")
    assert same == base
    changed = resolve_config(
        "quick",
        overrides='{"train.learning_rate": 0.01, "model.projection_dim": 32}',
        epochs=4,
        temperature=0.2,
        encoder="resnet18",
        limit=100,
        seed=7,
    )
    assert (changed.train.epochs, changed.train.temperature, changed.model.encoder) == (
        4,
        0.2,
        "resnet18",
    )
    assert (changed.train.learning_rate, changed.model.projection_dim) == (0.01, 32)
    assert (changed.data.limit, changed.train.seed) == (100, 7)
    with pytest.raises(ConfigError, match="temperature=-1"):
        resolve_config("quick", temperature=-1)
    with pytest.raises(ConfigError, match="limit=-5"):
        resolve_config("quick", limit=-5)


def test_a_full_disk_while_saving_a_model_names_the_file_and_leaves_no_staging_copy(
    tmp_path, monkeypatch
):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    def disk_full(self, path, *args, **kwargs):
        with open(path, "wb") as stream:
            stream.write(b"PK")  # a part written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", disk_full)
    config = resolve_config("tiny")
    with pytest.raises(OSError) as raised:
        modeldir.save_model_dir(tmp_path, model, config=config, history={}, metrics={}, info={})
    assert str(raised.value) == (
        f"[Errno 28] No space left on device: '{tmp_path / 'model.keras'}'"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_load_model_dir_refuses_missing_and_incomplete(tmp_path):
    with pytest.raises(modeldir.ModelIncompleteError, match="model.keras is missing"):
        modeldir.load_model_dir(tmp_path)
    (tmp_path / "model.keras").write_bytes(b"x")
    with pytest.raises(modeldir.ModelIncompleteError, match="no COMPLETE marker"):
        modeldir.load_model_dir(tmp_path)


@pytest.mark.slow
def test_semi_supervised_simclr_then_finetune(separable_npz, tmp_path):
    dataset = tmp_path / "semi"
    manifest = data.ingest(
        f"npz:{separable_npz}", str(dataset), labeled_fraction=0.25, progress=False
    )
    splits = {name: split["num_examples"] for name, split in manifest["splits"].items()}
    assert splits["unlabeled"] > 2 * splits["train"]
    config = resolve_config(
        "tiny", overrides=["train.use_unlabeled=true", "train.method=simclr", "data.limit=null"]
    )
    loaded = data.load_training_data(str(dataset), limit=config.data.limit, include_unlabeled=True)
    x, y = loaded.train
    assert len(x) == splits["train"] + splits["unlabeled"]
    assert int(np.sum(y == -1)) == splits["unlabeled"]

    encoder_dir, classifier_dir = tmp_path / "encoder", tmp_path / "classifier"
    metrics = tasks.run_pretrain(str(dataset), encoder_dir, config)
    assert metrics["method"] == "simclr" and metrics["epochs"] == 1
    result = tasks.run_train_classifier(
        str(dataset), encoder_dir, classifier_dir, config, mode="finetune"
    )
    assert result["mode"] == "finetune"
    info = json.loads((classifier_dir / "info.json").read_text())
    assert info["mode"] == "finetune" and info["method"] == "simclr"
    evaluation = tasks.run_evaluate(str(dataset), classifier_dir, embedding_points=10)
    assert evaluation["num_examples"] == splits["test"]
    assert len(evaluation["embedding_2d"]["x"]) == 10


@pytest.mark.slow
def test_few_labels_no_unlabelled_image_reaches_a_cross_entropy_loss(
    tiny_dataset, tmp_path, monkeypatch
):
    """At 25 % of the labels (90 of the 360 train images, 22-23 a class) every gradient-descent
    fit with a cross-entropy loss (the baseline, fine-tuning) sees the labelled subset only,
    never a -1 label; the fitted head's selection sees the whole pool with 270 unlabelled
    (standardisation, label spreading) and SupCon pretraining all 360 (the controls: the same
    feed with -1 in it)."""
    from contrastive import training
    from contrastive.training import classifier as classifier_module
    from contrastive.training import probe

    seen = {}

    def labels_of(train):
        if isinstance(train, tuple):
            return np.asarray(train[1])
        return np.concatenate([np.asarray(y) for _, y in train])

    def spying(name, function):
        def spy(config, train, *args, **kwargs):
            seen[name] = labels_of(train)
            return function(config, train, *args, **kwargs)

        return spy

    def spying_fit(function):
        def spy(model, config, train, *args, **kwargs):
            seen.setdefault("fits", []).append((model.name, labels_of(train)))
            return function(model, config, train, *args, **kwargs)

        return spy

    def spying_selection(function):
        def spy(features, labels, *args, **kwargs):
            seen.setdefault("selection", []).append(np.asarray(labels))
            return function(features, labels, *args, **kwargs)

        return spy

    monkeypatch.setattr(training, "pretrain", spying("pretrain", training.pretrain))
    monkeypatch.setattr(
        classifier_module.fitting, "fit_model", spying_fit(training.fitting.fit_model)
    )
    monkeypatch.setattr(probe, "select_classifier", spying_selection(probe.select_classifier))
    config = resolve_config("tiny", overrides=["data.limit=null"], labeled_fraction=0.25)
    tasks.run_train_baseline(tiny_dataset, tmp_path / "baseline", config)
    tasks.run_pretrain(tiny_dataset, tmp_path / "encoder", config, method="supcon")
    for mode in ("fitted", "finetune"):
        tasks.run_train_classifier(
            tiny_dataset, tmp_path / "encoder", tmp_path / mode, config, mode=mode
        )
    fits = dict(seen["fits"])
    assert list(fits) == ["baseline", "pretrain_supcon", "classifier_finetune"]
    for name in ("baseline", "classifier_finetune"):  # the cross-entropy fits
        assert len(fits[name]) == 90 and fits[name].min() >= 0, name
        assert set(np.bincount(fits[name]).tolist()) <= {22, 23}, name
    assert len(fits["pretrain_supcon"]) == 360 and int(np.sum(fits["pretrain_supcon"] == -1)) == 270
    assert len(seen["selection"]) == 2  # fitted, and the fitted start of finetune
    for labels in seen["selection"]:
        assert len(labels) == 360 and int(np.sum(labels == -1)) == 270
        assert sorted(labels[labels >= 0]) == sorted(seen["fits"][0][1])
    assert len(seen["pretrain"]) == 360 and int(np.sum(seen["pretrain"] == -1)) == 270
    assert sorted(seen["pretrain"][seen["pretrain"] >= 0]) == sorted(seen["fits"][0][1])
    info = json.loads((tmp_path / "fitted" / "info.json").read_text())
    assert info["labeled_fraction"] == 0.25
    assert info["classifier_selection"]["labelled"] == 90
    assert info["classifier_selection"]["pool"] == 360


@pytest.fixture(scope="module")
def simclr_encoder(tiny_dataset, tmp_path_factory):
    """SimCLR pretrained once on the tiny set at 50 % of the labels (it reads none), read by
    the classifier-step tests below (each writes its classifier elsewhere)."""
    encoder = tmp_path_factory.mktemp("simclr") / "encoder"
    config = resolve_config("tiny", overrides=["data.limit=null"], labeled_fraction=0.5)
    tasks.run_pretrain(tiny_dataset, encoder, config, method="simclr")
    return encoder


@pytest.mark.slow  # pretrains and fits (issue 26: tests that train carry the mark)
def test_fitted_classifier_selection_reads_no_test_or_validation_image(
    tiny_dataset, simclr_encoder, tmp_path, monkeypatch
):
    """A spy on the reader and on the selection: the classifier step never opens the test
    split, and what the selection fits and scores is the train pool's features only; the
    validation split is read once, for the reported validation accuracy."""
    from contrastive import training
    from contrastive.data import reader
    from contrastive.models import find_encoder
    from contrastive.training import probe

    config = resolve_config("tiny", overrides=["data.limit=null"], labeled_fraction=0.5)
    splits_read, selected = [], []
    read_split = reader.read_split

    def spy_read(uri, split, *args, **kwargs):
        splits_read.append(split)
        return read_split(uri, split, *args, **kwargs)

    def spy_select(features, labels, *args, **kwargs):
        selected.append((np.asarray(features), np.asarray(labels)))
        return select(features, labels, *args, **kwargs)

    select = probe.select_classifier
    monkeypatch.setattr(reader, "read_split", spy_read)
    monkeypatch.setattr(probe, "select_classifier", spy_select)
    result = tasks.run_train_classifier(
        tiny_dataset, simclr_encoder, tmp_path / "classifier", config, mode="fitted"
    )
    monkeypatch.undo()
    assert "test" not in splits_read and splits_read.count("validation") == 1
    assert result["classifier"] in probe.CANDIDATES and len(selected) == 1
    features, labels = selected[0]
    model, _ = modeldir.load_model_dir(tmp_path / "classifier")
    extractor = find_encoder(model)

    def rows(images):
        return {tuple(np.round(row, 3)) for row in training.embed(extractor, images)}

    train_x, train_y = data.load_arrays(tiny_dataset, "train")
    validation_x, _ = data.load_arrays(tiny_dataset, "validation")
    pool = {tuple(np.round(row, 3)) for row in features}
    assert len(features) == len(train_y) == 360
    assert pool == rows(train_x)
    assert not pool & rows(validation_x)
    assert int((labels >= 0).sum()) == 180 and int((labels == -1).sum()) == 180


@pytest.mark.slow
def test_distillation_in_the_classifier_step_trains_on_the_streamed_pool(
    tiny_dataset, simclr_encoder, tmp_path, monkeypatch
):
    """`train.distill_epochs` through the pipeline's classifier step: the student trains on
    every train image read from the shards (half of them unlabelled), never on validation
    or test images, and the step records the choice and saves a model that loads."""
    from contrastive.data import reader
    from contrastive.training import distill

    config = resolve_config(
        "tiny", overrides=["data.limit=null", "train.distill_epochs=1"], labeled_fraction=0.5
    )
    splits_read, trained_on = [], []
    read_split, fit_model = reader.read_split, distill.fitting.fit_model

    def spy_read(uri, split, *args, **kwargs):
        splits_read.append(split)
        return read_split(uri, split, *args, **kwargs)

    def spy_fit(model, config, train, validation, **kwargs):
        trained_on.append((np.asarray(train[0]), np.asarray(train[1]), validation))
        return fit_model(model, config, train, validation, **kwargs)

    monkeypatch.setattr(reader, "read_split", spy_read)
    monkeypatch.setattr(distill.fitting, "fit_model", spy_fit)
    result = tasks.run_train_classifier(
        tiny_dataset, simclr_encoder, tmp_path / "classifier", config
    )
    monkeypatch.undo()
    assert "test" not in splits_read
    ((images, targets, validation),) = trained_on
    train_x, train_y = data.load_arrays(tiny_dataset, "train")
    validation_x, _ = data.load_arrays(tiny_dataset, "validation")
    assert validation is None and images.shape == train_x.shape and targets.shape == (360, 4)
    as_rows = {row.tobytes() for row in images}
    assert as_rows == {row.tobytes() for row in train_x}
    assert not as_rows & {row.tobytes() for row in validation_x}
    assert int((targets.max(1) == 1.0).sum()) >= 180  # the labelled half: one-hot rows
    info = json.loads((tmp_path / "classifier" / "info.json").read_text())
    selection = info["classifier_selection"]
    assert selection["distill_images"] == 360 and selection["distill_unlabelled"] == 180
    kept_student = selection["distill_kept"] == "student"
    assert result["distilled"] is kept_student
    assert kept_student == (selection["distilled_val_accuracy"] >= selection["fitted_val_accuracy"])
    model, _ = modeldir.load_model_dir(tmp_path / "classifier")
    assert model.output_shape == (None, 4)


def test_a_pipeline_steps_sinks_come_from_its_parameters_and_environment(tmp_path):
    from contrastive.tasks import StepSinks

    environ = {"CONTRASTIVE_PROGRESS_DIR": str(tmp_path / "progress")}
    sinks = StepSinks.for_pipeline_step(
        environ,
        name="pretrain-supcon",
        tensorboard_root="gs://b/tb/",
        checkpoint_root="gs://b/checkpoints",
        job_id="run-7",
    )
    assert sinks == StepSinks(
        tensorboard="gs://b/tb/pretrain-supcon",
        durable="gs://b/checkpoints/run-7/pretrain-supcon",
        progress=str(tmp_path / "progress" / "pretrain-supcon.jsonl"),
    )
    vertex = {"AIP_TENSORBOARD_LOG_DIR": "gs://v/tb/7"}  # Vertex's wins over the root
    assert StepSinks.for_pipeline_step(vertex, name="x", tensorboard_root="gs://b/tb") == (
        StepSinks(tensorboard="gs://v/tb/7")
    )
    assert StepSinks.for_pipeline_step({}, name="train-baseline") == StepSinks()


@pytest.mark.parametrize(
    "sinks",
    [
        {},
        {"tensorboard": "gs://b/tb/x"},
        {"tensorboard": "/t", "durable": "gs://b/ckpt/run/x", "progress": "/p/x.jsonl"},
    ],
)
def test_sinks_read_back_from_the_flags_they_write(sinks):
    from contrastive.tasks import StepSinks
    from contrastive.tasks.calls import TrainingCall
    from pipelines.cli import build_parser
    from pipelines.cli.steps import training_argv

    sinks = StepSinks(**sinks)
    command = training_argv(
        TrainingCall("pretrain", data="gs://b/d", output="gs://b/o", profile="tiny", sinks=sinks)
    )
    flags = sinks.to_flags()
    assert len(flags) == 2 * len([value for value in vars(sinks).values() if value])
    assert command[len(command) - len(flags) :] == flags
    args = build_parser().parse_args(command[1:])  # the CLI reads what the TrainJob runs
    assert StepSinks.from_flags(args) == sinks


class _Metrics:
    """The part of a KFP `Metrics` artifact `log_metrics` uses."""

    def __init__(self, path):
        self.path = str(path)
        self.metadata = {}

    def log_metric(self, name, value):
        self.metadata[name] = value


def test_log_metrics_logs_the_numbers_and_writes_them_at_the_artifact_path(tmp_path):
    from contrastive.tasks import log_metrics

    metrics = _Metrics(tmp_path / "step" / "metrics")
    log_metrics(metrics, {"loss": 0.5, "epochs": 3, "method": "supcon", "knn": None})
    assert metrics.metadata == {"loss": 0.5, "epochs": 3.0}
    assert json.loads((tmp_path / "step" / "metrics").read_text()) == {"loss": 0.5, "epochs": 3.0}


def test_append_line_appends_whole_lines_and_refuses_remote_paths(tmp_path):
    from contrastive import storage

    path = tmp_path / "new" / "progress.jsonl"
    storage.append_line(path, '{"epoch": 1}')
    storage.append_line(path, '{"epoch": 2}\n')
    assert path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    with pytest.raises(ValueError, match="local files only. Received: path='gs://b/p.jsonl'"):
        storage.append_line("gs://b/p.jsonl", "x")


def test_a_pipeline_step_fits_its_config_to_its_dataset(tiny_dataset, tmp_path, monkeypatch):
    """The training components fit the profile to the dataset they read (`sizing`): the
    quick profile's batch of 256 on 360 training images becomes 32, filled to 16 steps an
    epoch; a batch the run set is kept."""
    from types import SimpleNamespace

    from contrastive.tasks import training

    seen = []

    def stop(dataset, output_dir, config, **kwargs):
        seen.append(config.train)
        raise InterruptedError

    monkeypatch.setattr(training, "run_train_baseline", stop)
    output = SimpleNamespace(uri=str(tmp_path / "model"), path=str(tmp_path / "model"))
    for batch_size in (0, 64):
        with pytest.raises(InterruptedError):
            training.run_training_component(
                "baseline",
                {},
                dataset=tiny_dataset,
                output=output,
                metrics=None,
                profile="quick",
                batch_size=batch_size,
            )
    assert (seen[0].batch_size, seen[0].min_steps_per_epoch) == (32, 16)
    assert seen[1].batch_size == 64
