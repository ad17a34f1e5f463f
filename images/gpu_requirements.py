"""Write the GPU image's requirement and constraint files from pyproject.toml and constraints.txt.

The `tf` extra pins `tensorflow-cpu`; the GPU image needs `tensorflow[and-cuda]` at the same
version instead (both ship the `tensorflow` package, so they cannot be installed together).
This swaps one for the other and keeps every other pin:

    python images/gpu_requirements.py --pyproject pyproject.toml \
        --constraints constraints.txt --output-dir /wheels

writes `requirements-gpu.txt` (the project's runtime dependencies: base + `IMAGE_EXTRAS`) and
`constraints-gpu.txt` (constraints.txt with `tensorflow-cpu==X` replaced by `tensorflow==X`,
plus `CUDA_PINS`).

`tensorflow[and-cuda]` asks for its CUDA wheels by range (`nvidia-cudnn-cu12>=9.3.0.75,<10`),
so an unpinned build would take whatever is newest that day. `CUDA_PINS` pins each to the
lower bound TensorFlow 2.21.0 declares (the versions it was built against); read them again
after changing the TensorFlow pin:

    pip install --dry-run --no-deps --ignore-installed --report r.json "tensorflow[and-cuda]==X"

`--backend jax` writes the JAX image's files instead: base + `tf` extra with
`tensorflow-cpu` kept (tf.data and TFRecord I/O only) + `jax[cuda12]==X` at the version
constraints.txt pins for `jax`; the constraints are constraints.txt unchanged.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import tomllib

# TensorFlow 2.21.0's `and-cuda` extra, each wheel at the lower bound of its declared range.
CUDA_PINS = (
    "nvidia-cublas-cu12==12.5.3.2",
    "nvidia-cuda-cupti-cu12==12.5.82",
    "nvidia-cuda-nvcc-cu12==12.5.82",
    "nvidia-cuda-nvrtc-cu12==12.5.82",
    "nvidia-cuda-runtime-cu12==12.5.82",
    "nvidia-cudnn-cu12==9.3.0.75",
    "nvidia-cufft-cu12==11.2.3.61",
    "nvidia-curand-cu12==10.3.6.82",
    "nvidia-cusolver-cu12==11.6.3.83",
    "nvidia-cusparse-cu12==12.5.1.3",
    "nvidia-nccl-cu12==2.27.7",
    "nvidia-nvjitlink-cu12==12.5.82",
)
# The extras both images install besides the base dependencies (pyproject.toml); `beam`: the
# ingest step runs its Beam job (the DirectRunner in the step, or launching Dataflow / a
# portable job server).
IMAGE_EXTRAS = ("tf", "serving", "beam")
_CPU_PIN = re.compile(r"^tensorflow[-_]cpu\s*==\s*([^\s;#]+)", re.IGNORECASE)
_JAX_PIN = re.compile(r"^jax\s*==\s*([^\s;#]+)", re.IGNORECASE)


def image_requirements(pyproject: dict) -> list[str]:
    """Base dependencies + every extra of `IMAGE_EXTRAS`, as pyproject.toml lists them."""
    project = pyproject["project"]
    requirements = list(project.get("dependencies", []))
    for extra in IMAGE_EXTRAS:
        requirements += list(project.get("optional-dependencies", {}).get(extra, []))
    return requirements


def gpu_requirements(pyproject: dict) -> list[str]:
    """`image_requirements`, with `tensorflow-cpu==X` -> `tensorflow[and-cuda]==X`."""
    requirements = image_requirements(pyproject)
    swapped, found = [], False
    for requirement in requirements:
        match = _CPU_PIN.match(requirement.strip())
        if match:
            swapped.append(f"tensorflow[and-cuda]=={match.group(1)}")
            found = True
        else:
            swapped.append(requirement)
    if not found:
        raise ValueError("no tensorflow-cpu==VERSION pin in the tf extra")
    return swapped


def jax_gpu_requirements(pyproject: dict, constraints: list[str]) -> list[str]:
    """`image_requirements` as pinned (tensorflow-cpu) + `jax[cuda12]==X`."""
    requirements = image_requirements(pyproject)
    version = next(
        (match.group(1) for line in constraints if (match := _JAX_PIN.match(line.strip()))), None
    )
    if version is None:
        raise ValueError("no jax==VERSION pin in the constraints")
    return [*requirements, f"jax[cuda12]=={version}"]


def gpu_constraints(lines: list[str]) -> list[str]:
    """constraints.txt lines with the tensorflow-cpu pin turned into a tensorflow pin, then
    the CUDA wheels' pins."""
    result = []
    for line in lines:
        match = _CPU_PIN.match(line.strip())
        result.append(f"tensorflow=={match.group(1)}" if match else line.rstrip("\n"))
    return result + list(CUDA_PINS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", default="pyproject.toml")
    parser.add_argument("--constraints", default="constraints.txt")
    parser.add_argument("--output-dir", default=".")
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    args = parser.parse_args(argv)
    with open(args.pyproject, "rb") as stream:
        pyproject = tomllib.load(stream)
    with open(args.constraints, encoding="utf-8") as stream:
        lines = stream.readlines()
    if args.backend == "jax":
        requirements = jax_gpu_requirements(pyproject, lines)
        constraints = [line.rstrip("\n") for line in lines]
    else:
        requirements = gpu_requirements(pyproject)
        constraints = gpu_constraints(lines)
    os.makedirs(args.output_dir, exist_ok=True)
    for name, lines in (
        ("requirements-gpu.txt", requirements),
        ("constraints-gpu.txt", constraints),
    ):
        with open(os.path.join(args.output_dir, name), "w", encoding="utf-8") as stream:
            stream.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
