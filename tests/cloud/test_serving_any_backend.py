"""Issue 24 item 4: a model trained on JAX (`--backend jax`, compare-and-report in the JAX
image) is promoted with its serving SavedModel and KServe manifest, like one trained on
TensorFlow. The promotion runs in a child Python on the JAX backend (Keras picks its backend
once per process)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, sys
    import keras
    import numpy as np
    from contrastive.config import load_config
    from contrastive.modeldir import save_model_dir
    from contrastive.registry import gate_champion

    assert keras.backend.backend() == "jax", keras.backend.backend()
    work = sys.argv[1]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images = np.arange(2 * 64, dtype=np.uint8).reshape(2, 8, 8, 1)
    np.save(work + "/expected.npy", np.asarray(model.predict(images, verbose=0)))
    save_model_dir(
        work + "/candidate", model, config=load_config("tiny"), history={}, metrics={},
        info={"kind": "classifier", "num_classes": 3, "image_shape": [8, 8, 1]},
    )
    decision = gate_champion(
        work + "/registry", "supcon", 0.9, work + "/candidate", run_id="run-jax",
        margin=0.0, evaluate=lambda path: 0.0,
    )
    print("DECISION " + json.dumps(decision))
    """
)


@pytest.mark.slow
def test_a_jax_trained_champion_is_promoted_with_its_serving_saved_model(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [row for row in done.stdout.splitlines() if row.startswith("DECISION ")][-1]
    decision = json.loads(line[len("DECISION ") :])
    version = tmp_path / "registry" / "versions" / "run-jax"
    assert decision["promoted"] is True
    assert decision["inference_service"] == str(tmp_path / "registry" / "inferenceservice.yaml")
    assert (version / "saved_model" / "saved_model.pb").is_file()
    assert (version / "kserve" / "1" / "saved_model.pb").is_file()

    import tensorflow as tf  # this process: the SavedModel serves what the JAX model predicts

    serve = tf.saved_model.load(str(version / "saved_model")).signatures["serve"]
    images = np.arange(2 * 64, dtype=np.uint8).reshape(2, 8, 8, 1)
    served = serve(images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(served, np.load(tmp_path / "expected.npy"), atol=1e-5)


@pytest.mark.slow
def test_export_on_another_backend_reports_the_childs_error(tmp_path, monkeypatch):
    import keras

    from contrastive import export

    if keras.backend.backend() == "tensorflow":
        monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="SavedModel export of .* failed"):
        export.export_model_dir(str(tmp_path / "missing"), str(tmp_path / "out"))
