"""Write the GPU image's requirement and constraint files from pyproject.toml and constraints.txt.

The `tf` extra pins `tensorflow-cpu`; the GPU image needs `tensorflow[and-cuda]` at the same
version instead (both ship the `tensorflow` package, so they cannot be installed together).
This swaps one for the other and keeps every other pin:

    python images/gpu_requirements.py --pyproject pyproject.toml \
        --constraints constraints.txt --output-dir /wheels

writes `requirements-gpu.txt` (the project's runtime dependencies: base + `tf` extra) and
`constraints-gpu.txt` (constraints.txt with `tensorflow-cpu==X` replaced by `tensorflow==X`).

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

_CPU_PIN = re.compile(r"^tensorflow[-_]cpu\s*==\s*([^\s;#]+)", re.IGNORECASE)
_JAX_PIN = re.compile(r"^jax\s*==\s*([^\s;#]+)", re.IGNORECASE)


def gpu_requirements(pyproject: dict, extra: str = "tf") -> list[str]:
    """Base dependencies + `extra`, with `tensorflow-cpu==X` -> `tensorflow[and-cuda]==X`."""
    project = pyproject["project"]
    requirements = list(project.get("dependencies", []))
    requirements += list(project.get("optional-dependencies", {}).get(extra, []))
    swapped, found = [], False
    for requirement in requirements:
        match = _CPU_PIN.match(requirement.strip())
        if match:
            swapped.append(f"tensorflow[and-cuda]=={match.group(1)}")
            found = True
        else:
            swapped.append(requirement)
    if not found:
        raise ValueError(f"no tensorflow-cpu==VERSION pin in the {extra!r} extra")
    return swapped


def jax_gpu_requirements(pyproject: dict, constraints: list[str]) -> list[str]:
    """Base dependencies + the `tf` extra as pinned (tensorflow-cpu) + `jax[cuda12]==X`."""
    project = pyproject["project"]
    requirements = list(project.get("dependencies", []))
    requirements += list(project.get("optional-dependencies", {}).get("tf", []))
    version = next(
        (match.group(1) for line in constraints if (match := _JAX_PIN.match(line.strip()))), None
    )
    if version is None:
        raise ValueError("no jax==VERSION pin in the constraints")
    return [*requirements, f"jax[cuda12]=={version}"]


def gpu_constraints(lines: list[str]) -> list[str]:
    """constraints.txt lines with the tensorflow-cpu pin turned into a tensorflow pin."""
    result = []
    for line in lines:
        match = _CPU_PIN.match(line.strip())
        result.append(f"tensorflow=={match.group(1)}" if match else line.rstrip("\n"))
    return result


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
