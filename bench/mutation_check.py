"""Mutation check: break the code on purpose and show that a unit test fails for each mutant.

Each mutant names a function or method (`Class.method`), found by name with `ast` anywhere
under `src/contrastive/` (so it survives moves between modules), and a piece of its source
text to replace. The script edits the file, runs the tests that guard that function, and
restores the file, whatever happens.
A mutant is *killed* when the tests fail, *survived* when they pass; a mutant whose text is
no longer in its function is reported as *stale* (update this list after a refactor).

Usage (from the repository root; a few minutes on 2 cores):
    KERAS_BACKEND=tensorflow .venv/bin/python bench/mutation_check.py \
        [--only loss,knn,embedding,confusion,commit,champion]
(the champion group needs TensorFlow: the Vertex upload of a promoted SavedModel is tested there)

Prints one line per mutant and a summary; exits 1 when a mutant survives or is stale.
Not part of `make test` (it runs the tests once per mutant).
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
KNN = ("tests/unit/test_knn.py", "tests/unit/test_neighbours.py")
EMBEDDING = ("tests/unit/test_neighbours.py", "tests/unit/test_drift.py")
CONFUSION = ("tests/unit/test_evaluation.py",)
COMMIT = (
    "tests/unit/test_data_ingest.py",
    "tests/unit/test_data_reader.py",
    "tests/reliability/test_concurrent_writers.py",
)
CHAMPION = (
    "tests/cloud/test_registry_champion.py",
    "tests/cloud/test_storage_gcs.py",
    "tests/cloud/test_vertex_model_registry.py",
)

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
    # weighted kNN and its neighbour search
    Mutant("knn", "nearest_neighbours", "top_k(block, k", "top_k(-block, k", KNN),
    Mutant("knn", "nearest_neighbours", "block = block - 3.0 * own", "pass", KNN),
    Mutant(
        "knn", "nearest_neighbours", "lexsort((neighbours, -top)", "lexsort((neighbours, top)", KNN
    ),
    Mutant("knn", "nearest_neighbours", "k = min(int(k), ", "k = min(int(k) + 1, ", KNN),
    Mutant("knn", "knn_predict", ") / temperature)", ") * temperature)", KNN),
    Mutant("knn", "knn_predict", "votes.argmax(axis=1)", "votes.argmin(axis=1)", KNN),
    Mutant("knn", "knn_predict", "labels[neighbours]), weights)", "labels[neighbours]), 1.0)", KNN),
    # suspect labels and the drift test
    Mutant("embedding", "suspect_labels", "votes[rows, mine] = -1", "pass", EMBEDDING),
    Mutant(
        "embedding", "suspect_labels", "share >= min_share - 1e-9", "share > min_share", EMBEDDING
    ),
    Mutant("embedding", "_mmd2", "- 2.0 * across", "- 1.0 * across", EMBEDDING),
    Mutant("embedding", "_mmd2", "/ (n * (n - 1))", "/ (n * n)", EMBEDDING),
    Mutant("embedding", "mmd_test", "np.fill_diagonal(kernel, 0.0)", "pass", EMBEDDING),
    Mutant("embedding", "ReservoirSample.add", "(later + 1)).astype", "(later)).astype", EMBEDDING),
    Mutant("embedding", "decide_retraining", "if not same_code:", "if False:", EMBEDDING),
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
    Mutant(
        "commit",
        "_remove_stale_files",
        "                storage.remove_tree(path)",
        "                pass",
        COMMIT,
    ),
    Mutant(
        "commit",
        "_commit",
        "storage.json_bytes(manifest), generation)",
        "storage.json_bytes(manifest), storage.read_with_generation(manifest_path)[1])",
        COMMIT,
    ),
    Mutant("commit", "claiming", "_refuse(output, committed)", "pass", COMMIT),
    Mutant(
        "commit",
        "_commit",
        'storage.rename(storage.join(tmp, INDEX_NAME), storage.join(output, manifest["index"]))',
        "pass",
        COMMIT,
    ),
    # champion gate: the decision, the gate a pipeline runs, and the compare-and-swap promotion
    Mutant(
        "champion",
        "decide",
        "candidate_score > champion_score + margin",
        "candidate_score >= champion_score + margin",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "decide",
        "candidate_score > champion_score + margin",
        "candidate_score > champion_score - margin",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "decide",
        "candidate_score < champion_score - margin",
        "candidate_score <= champion_score - margin",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "decide",
        "candidate_score < champion_score - margin",
        "candidate_score < champion_score + margin",
        CHAMPION,
    ),
    Mutant("champion", "decide", "if margin < 0:", "if margin < -1:", CHAMPION),
    Mutant(
        "champion",
        "decide",
        'return Decision(True, f"no champion yet',
        'return Decision(False, f"no champion yet',
        CHAMPION,
    ),
    Mutant(
        "champion",
        "decide",
        '_check_finite("champion_score", champion_score)',
        "pass",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "decide",
        'relation = ">" if better else "<="',
        'relation = ">"',
        CHAMPION,
    ),
    Mutant(
        "champion",
        "gate_champion",
        "_evaluate_anywhere(registry.champion_model_dir(), evaluate)",
        "candidate_accuracy",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "gate_champion",
        "decide(candidate_accuracy, champion_accuracy, margin)",
        "decide(candidate_accuracy, champion_accuracy, 0.0)",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "gate_champion",
        'expected_generation=champion["generation"] if champion else 0',
        "expected_generation=None",
        CHAMPION,
    ),
    Mutant("champion", "gate_champion", "    if promote:\n", "    if True:\n", CHAMPION),
    Mutant(
        "champion",
        "gate_champion",
        "registry.record_decision(run_id, decision)",
        "pass",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "gate_champion",
        'champion.get("run_id") if champion else None',
        "None",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "gate_champion",
        "if publish is not None:",
        "if publish is not None and False:",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "_evaluate_anywhere",
        "if not storage.is_gcs(model_uri):",
        "if True:",
        CHAMPION,
    ),
    Mutant(
        "champion", "_evaluate_anywhere", "storage.copy_tree(model_uri, local)", "pass", CHAMPION
    ),
    Mutant(
        "champion",
        "promote_with_export",
        'ignore=shutil.ignore_patterns("checkpoints")',
        "ignore=None",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "promote_with_export",
        'extra={"method": method}',
        "extra={}",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "ModelRegistry.promote",
        "if expected_generation is not None and expected_generation != current_generation:",
        "if False:",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "ModelRegistry.promote",
        '"generation": current_generation + 1',
        '"generation": current_generation',
        CHAMPION,
    ),
    Mutant(
        "champion",
        "ModelRegistry.promote",
        "self._switch_pointer(record, token)",
        "self._switch_pointer(record, self._read_champion()[1])",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "ModelRegistry.promote",
        "last=COMPLETE_MARKER, client=self._client",
        "last=None, client=self._client",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "ModelRegistry.promote",
        "if require_complete and COMPLETE_MARKER not in files:",
        "if False:",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "ModelRegistry.promote",
        '"previous_version": current["version"] if current else None',
        '"previous_version": None',
        CHAMPION,
    ),
    Mutant(
        "champion",
        "ModelRegistry.promote",
        "    if COMPLETE_MARKER not in files:\n",
        "    if False:\n",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "ModelRegistry._switch_pointer",
        "storage.write_if_generation_match(self.champion_uri, data, token, client=self._client)",
        "storage.write_bytes(self.champion_uri, data, client=self._client)",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "write_if_generation_match",
        "if current != generation:",
        "if False:",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "write_if_generation_match",
        "blob.upload_from_string(data, if_generation_match=generation)",
        "blob.upload_from_string(data)",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "read_with_generation",
        "return data, _fingerprint(data)",
        "return data, 1",
        CHAMPION,
    ),
]


def locate(function: str) -> tuple[Path, int, int]:
    """`(file, start offset, end offset)` of the one top-level function named `function`, or
    of the one method, for `Class.method`."""
    owner, _, name = function.rpartition(".")
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text()
        scopes = [ast.parse(text)]
        if owner:
            scopes = [n for n in scopes[0].body if isinstance(n, ast.ClassDef) and n.name == owner]
        for node in (node for scope in scopes for node in scope.body):
            if isinstance(node, ast.FunctionDef) and node.name == name:
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
