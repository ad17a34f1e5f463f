"""Check on PyPI that the GPU image's TensorFlow pin exists (a maintenance check, needs network).

`make test` proves every other pin offline (the dev environment installs them); the GPU image
alone installs `tensorflow[and-cuda]==X`, X being the `tensorflow-cpu` pin in constraints.txt.
Run this after changing that pin:

    python images/check_gpu_pin.py [--constraints constraints.txt]

Exits 0 when `pip index versions tensorflow` lists X, 1 when it does not, 2 when the index
cannot be read.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path


def tensorflow_pin(constraints: Path) -> str:
    """The version pinned for `tensorflow-cpu` in a constraints file."""
    for line in constraints.read_text().splitlines():
        if re.match(r"tensorflow[-_]cpu==", line.strip(), flags=re.IGNORECASE):
            return line.strip().split("==", 1)[1]
    raise SystemExit(f"error: no tensorflow-cpu==X pin in {constraints}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constraints", type=Path, default=Path("constraints.txt"))
    args = parser.parse_args(argv)
    version = tensorflow_pin(args.constraints)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "tensorflow"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Available versions: (.*)", result.stdout)
    if result.returncode != 0 or match is None:
        print(f"error: cannot read the index: {result.stderr.strip()}", file=sys.stderr)
        return 2
    if version not in match.group(1).split(", "):
        print(f"error: tensorflow=={version} is not on the index", file=sys.stderr)
        return 1
    print(f"tensorflow=={version} is on the index (GPU image pin)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
