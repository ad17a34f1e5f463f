"""Every saved artifact loads, predicts the same and exports, in a fresh Python process that
imports only `contrastive` (and Keras) - the train -> evaluate -> serve hand-offs cross
processes, and users load our `.keras` files with `contrastive.load_model` or
`keras.saving.load_model(..., custom_objects=contrastive.custom_objects())`. Importing the
package registers nothing: no import hook, no side effect."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def artifacts(tiny_dataset, trained_models, tmp_path_factory):
    """{name: (model.keras path, input images, expected outputs)} for the four artifact kinds:
    the session's trained encoder, classifier and baseline, and an untrained pretraining model."""
    from contrastive import data
    from contrastive.config import resolve_config
    from contrastive.modeldir import load_model_dir
    from contrastive.training import build_pretrain_model

    root = tmp_path_factory.mktemp("artifacts")
    manifest = data.read_manifest(tiny_dataset)
    config = resolve_config("tiny")
    pretrain_model = build_pretrain_model(config, manifest["image_shape"], manifest["num_classes"])
    (root / "pretrain").mkdir()
    pretrain_model.save(root / "pretrain" / "model.keras")
    folders = {
        **{name: Path(path) for name, path in trained_models.items()},
        "pretrain": root / "pretrain",
    }

    images, _ = data.load_arrays(tiny_dataset, "test")
    images = images[:8].astype("float32")
    found = {}
    for name in ("encoder", "classifier", "baseline", "pretrain"):
        path = folders[name] / "model.keras"
        model = load_model_dir(folders[name])[0] if name != "pretrain" else pretrain_model
        found[name] = (path, images, _flat(model(images, training=False)))
    return found


def _flat(outputs):
    """A model's outputs (tensor, tuple or dict of tensors) as a list of arrays."""
    if isinstance(outputs, dict):
        return [array for key in sorted(outputs) for array in _flat(outputs[key])]
    if isinstance(outputs, (list, tuple)):
        return [array for item in outputs for array in _flat(item)]
    return [np.asarray(outputs)]


_FLAT = (
    "def _flat(o):\n"
    "    if isinstance(o, dict): return [a for k in sorted(o) for a in _flat(o[k])]\n"
    "    if isinstance(o, (list, tuple)): return [a for i in o for a in _flat(i)]\n"
    "    return [np.asarray(o)]\n"
)
# Each loads every artifact of argv[1] ({name: path}) on the images of argv[2] and writes
# argv[3]/<name>.npz.
_LOADS = (
    "images = np.load(sys.argv[2])\n"
    "for name, path in json.loads(sys.argv[1]).items():\n"
    "    np.savez(f'{sys.argv[3]}/{name}.npz', *_flat(load(path)(images, training=False)))\n"
)
_LOAD_WITH_KERAS = (
    "import json, sys, numpy as np\n"
    "import contrastive, keras\n" + _FLAT + "load = lambda path: keras.saving.load_model(path, "
    "custom_objects=contrastive.custom_objects())\n" + _LOADS
)
_LOAD_WITH_CONTRASTIVE = (
    "import json, sys, numpy as np\n"
    "import contrastive\n" + _FLAT + "load = contrastive.load_model\n" + _LOADS
)


def _fresh_python(code, *args, timeout=300):
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def fresh_outputs(artifacts, tmp_path_factory):
    """{loader: folder of <name>.npz}: one fresh process per loader loads all four artifacts."""
    root = tmp_path_factory.mktemp("fresh")
    paths = json.dumps({name: str(path) for name, (path, _, _) in artifacts.items()})
    np.save(root / "images.npy", artifacts["encoder"][1])
    found = {}
    for loader, code in (("keras", _LOAD_WITH_KERAS), ("contrastive", _LOAD_WITH_CONTRASTIVE)):
        (root / loader).mkdir()
        _fresh_python(code, paths, root / "images.npy", root / loader)
        found[loader] = root / loader
    return found


@pytest.mark.parametrize("name", ["encoder", "classifier", "baseline", "pretrain"])
@pytest.mark.parametrize("loader", ["keras", "contrastive"])
def test_artifact_loads_in_a_fresh_process(artifacts, fresh_outputs, name, loader):
    _, _, expected = artifacts[name]
    with np.load(fresh_outputs[loader] / f"{name}.npz") as loaded:
        outputs = [loaded[f"arr_{i}"] for i in range(len(loaded.files))]
    assert len(outputs) == len(expected)
    for output, reference in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(output, reference, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def exported(artifacts, tmp_path_factory):
    """{name: SavedModel folder} of the two classifiers, exported by one fresh process."""
    root = tmp_path_factory.mktemp("exported")
    folders = {name: str(root / name) for name in ("classifier", "baseline")}
    _fresh_python(
        "import json, sys\n"
        "from contrastive.export import export_saved_model\n"
        "for model, folder in json.loads(sys.argv[1]):\n"
        "    export_saved_model(model, folder)\n",
        json.dumps([(str(artifacts[name][0]), folder) for name, folder in folders.items()]),
    )
    return folders


@pytest.mark.parametrize("name", ["classifier", "baseline"])
def test_export_saved_model_in_a_fresh_process(artifacts, exported, name):
    import tensorflow as tf

    _, images, (expected,) = artifacts[name]
    served = tf.saved_model.load(exported[name]).signatures["serve"](
        images=tf.constant(images.astype(np.uint8))
    )
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(served["class"].numpy(), expected.argmax(-1))


@pytest.mark.slow
def test_import_contrastive_loads_neither_keras_nor_tensorflow():
    out = _fresh_python(
        "import sys, json, contrastive\n"
        "print(json.dumps(['keras' in sys.modules, 'tensorflow' in sys.modules]))\n"
    )
    assert json.loads(out) == [False, False]


_NAMES = ["RandomResizedCrop", "SupConLoss", "PretrainModel", "FrozenEncoder"]


@pytest.mark.slow
@pytest.mark.backend
def test_custom_objects_names_every_class_and_import_registers_nothing():
    out = _fresh_python(
        "import json, keras, contrastive\n"
        f"names = ['contrastive>' + n for n in {_NAMES!r}]\n"
        "before = [keras.saving.get_registered_object(n) is not None for n in names]\n"
        "found = contrastive.custom_objects()\n"
        "print(json.dumps([before, [found[n].__name__ for n in names],\n"
        "                  sorted({n.split('>')[0] for n in found})]))\n"
    )
    before, classes, packages = json.loads(out.strip().splitlines()[-1])
    assert before == [False] * len(_NAMES)  # `import contrastive` registered nothing
    assert classes == _NAMES
    assert packages == ["contrastive"]


def test_keras_alone_does_not_know_our_classes(artifacts, tmp_path):
    """Without `custom_objects` Keras refuses the file, naming the class: no hidden hook."""
    path, _, _ = artifacts["classifier"]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, contrastive, keras\nkeras.saving.load_model(sys.argv[1])",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "contrastive>" in result.stderr
