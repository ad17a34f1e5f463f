"""Mutation check: break the code on purpose and show that a unit test fails for each mutant.

Each mutant names a function (found by name with `ast` anywhere under `src/contrastive/`, so it
survives moves between modules) and a piece of its source text to replace. The script edits
the file, runs the tests that guard that function, and restores the file, whatever happens.
A mutant is *killed* when the tests fail, *survived* when they pass; a mutant whose text is
no longer in its function is reported as *stale* (update this list after a refactor).

Usage (from the repository root; a few minutes on 2 cores):
    .venv/bin/python bench/mutation_check.py [--only loss,knn,confusion,commit]

Prints one line per mutant and a summary; exits 1 when a mutant survives or is stale.
Not part of `make test` (it runs the unit tests once per mutant). The champion gate's mutants
are not listed yet: that code is moving to `registry.py`; add them once it has settled.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "src" / "contrastive"


class Mutant(NamedTuple):
    group: str
    function: str
    original: str
    mutated: str
    tests: tuple[str, ...]


LOSS = ("tests/unit/test_losses.py",)
KNN = ("tests/unit/test_knn.py",)
CONFUSION = ("tests/unit/test_evaluation.py",)
COMMIT = ("tests/unit/test_data_ingest.py", "tests/unit/test_data_reader.py")

MUTANTS = [
    # SupCon / NT-Xent loss
    Mutant(
        "loss",
        "supcon_loss",
        "ops.transpose(embeddings)) / temperature",
        "ops.transpose(embeddings)) * temperature",
        LOSS,
    ),
    Mutant("loss", "supcon_loss", "anchor_loss = -scale", "anchor_loss = scale", LOSS),
    Mutant(
        "loss",
        "supcon_loss",
        "ops.logical_or(same_image, same_class)",
        "ops.logical_or(same_class, same_class)",
        LOSS,
    ),
    Mutant(
        "loss",
        "supcon_loss",
        "ops.logical_and(ops.logical_or(same_image, same_class), ops.logical_not(is_self))",
        "ops.logical_or(same_image, same_class)",
        LOSS,
    ),
    Mutant(
        "loss",
        "supcon_loss",
        "greater_equal(entry_label, 0)",
        "greater_equal(entry_label, -1)",
        LOSS,
    ),
    Mutant(
        "loss", "supcon_loss", "ops.maximum(positives, 1.0)", "ops.maximum(positives, 2.0)", LOSS
    ),
    Mutant(
        "loss",
        "supcon_loss",
        "total / ops.maximum(num_anchors, 1.0)",
        "total / ops.cast(ops.shape(anchor_loss)[0], 'float32')",
        LOSS,
    ),
    Mutant("loss", "supcon_loss", "ops.max(logits, axis=1", "ops.min(logits, axis=1", LOSS),
    Mutant("loss", "supcon_loss", "ops.where(is_self, _MASKED_LOGIT, logits)", "logits", LOSS),
    # weighted kNN
    Mutant("knn", "knn_predict", "np.argpartition(-similarity", "np.argpartition(similarity", KNN),
    Mutant("knn", "knn_predict", ") / temperature)", ") * temperature)", KNN),
    Mutant("knn", "knn_predict", "votes.argmax(axis=1)", "votes.argmin(axis=1)", KNN),
    Mutant("knn", "knn_predict", "k = min(int(k), ", "k = min(int(k) + 1, ", KNN),
    Mutant("knn", "knn_predict", "labels[neighbours]), weights)", "labels[neighbours]), 1.0)", KNN),
    Mutant("knn", "knn_predict", "if k < reference.shape[0]:", "if False:", KNN),
    # confusion matrix and the metrics read from it
    Mutant(
        "confusion",
        "classification_metrics",
        "y_true * num_classes + y_pred",
        "y_pred * num_classes + y_true",
        CONFUSION,
    ),
    Mutant(
        "confusion",
        "metrics_from_confusion_matrix",
        "support = confusion.sum(axis=1)",
        "support = confusion.sum(axis=0)",
        CONFUSION,
    ),
    Mutant(
        "confusion",
        "metrics_from_confusion_matrix",
        "predicted = confusion.sum(axis=0)",
        "predicted = confusion.sum(axis=1)",
        CONFUSION,
    ),
    Mutant(
        "confusion",
        "metrics_from_confusion_matrix",
        "present = (support + predicted) > 0",
        "present = support > 0",
        CONFUSION,
    ),
    Mutant("confusion", "metrics_from_confusion_matrix", "2.0 * precision", "precision", CONFUSION),
    Mutant(
        "confusion",
        "metrics_from_confusion_matrix",
        "true_positives.sum() / total",
        "true_positives.max() / total",
        CONFUSION,
    ),
    # manifest commit of an ingest (the manifest is written last and commits the dataset)
    Mutant("commit", "_commit", "storage.remove(manifest_path)", "pass", COMMIT),
    Mutant(
        "commit",
        "_commit",
        "storage.remove_tree(storage.join(output, split))",
        "pass",
        COMMIT,
    ),
    Mutant("commit", "_commit", "storage.rename(staged, manifest_path)", "pass", COMMIT),
    Mutant(
        "commit",
        "_commit",
        "storage.rename(storage.join(tmp, INDEX_NAME), storage.join(output, INDEX_NAME))",
        "pass",
        COMMIT,
    ),
]


def locate(function: str) -> tuple[Path, int, int]:
    """`(file, start offset, end offset)` of the one top-level function named `function`."""
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text()
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef) and node.name == function:
                lines = text.splitlines(keepends=True)
                start = sum(map(len, lines[: node.lineno - 1]))
                end = sum(map(len, lines[: node.end_lineno]))
                found.append((path, start, end))
    if len(found) != 1:
        raise LookupError(f"function {function!r} found {len(found)} times under {SOURCE}")
    return found[0]


def run_mutant(mutant: Mutant, timeout: int) -> str:
    try:
        path, start, end = locate(mutant.function)
    except LookupError:
        return "stale"
    original = path.read_text()
    body = original[start:end]
    if body.count(mutant.original) != 1:
        return "stale"
    mutated = original[:start] + body.replace(mutant.original, mutant.mutated) + original[end:]
    path.write_text(mutated)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutant.tests],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return "killed (timeout)"
    finally:
        path.write_text(original)
    if result.returncode == 1:
        failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
        return "killed: " + (failed[0][7:] if failed else "tests failed")
    if result.returncode == 0:
        return "SURVIVED"
    return f"error (pytest exit {result.returncode}): {result.stdout[-300:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated groups (default: all)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutant")
    args = parser.parse_args(argv)
    groups = {g for g in args.only.split(",") if g}
    counts: dict[str, int] = {}
    for mutant in MUTANTS:
        if groups and mutant.group not in groups:
            continue
        outcome = run_mutant(mutant, args.timeout)
        kind = outcome.split(":")[0].split(" ")[0]
        counts[kind] = counts.get(kind, 0) + 1
        print(
            f"{mutant.group:9s} {mutant.function}: {mutant.original!r} -> {mutant.mutated!r}: "
            f"{outcome}",
            flush=True,
        )
    print("summary:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 1 if counts.get("SURVIVED") or counts.get("stale") or counts.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
