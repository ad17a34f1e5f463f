"""Mutation check: break the code on purpose and show that a unit test fails for each mutant.

Each mutant names a function or method (`Class.method`), found by name with `ast` anywhere
under `src/contrastive/`, `components/`, `pipelines/` and `bench/` (so it survives moves between
modules), and a piece of its source text to replace (nested functions included). The script
edits the file, runs the tests that guard that function, and restores the file, whatever
happens.
A mutant is *killed* when the tests fail, *survived* when they pass; a mutant whose text is
no longer in its function is reported as *stale* (update this list after a refactor).

Usage (from the repository root; a few minutes per group on 2 cores):
    KERAS_BACKEND=tensorflow .venv/bin/python bench/mutation_check.py \
        [--only loss,knn,embedding,confusion,commit,champion,durable,run_parameters,subsets,
                trainjob,gate_outcomes,wiring,sharpened,sharpened_slow,few_labels,
                kfp_setters,task_main,distill,task_server] [--pick TEXT]
(the champion group needs TensorFlow: the Vertex upload of a promoted SavedModel is tested there)

Prints one line per mutant, then killed/total per group; exits 1 when a mutant survives or is
stale. A mutant listed in `EXPLAINED` may survive (an equivalent change, reasoned there).
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
SOURCES = (REPO / "src" / "contrastive", REPO / "components", REPO / "pipelines", REPO / "bench")


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
    # the space the explain step searches (`neighbours.NeighbourSpace`)
    Mutant(
        "embedding",
        "NeighbourSpace.fit",
        "vectors[:, ::-1][:, :dim]",
        "vectors[:, :dim]",
        EMBEDDING,
    ),
    Mutant(
        "embedding",
        "NeighbourSpace.fit",
        "if dim == 0 or dim >= reference.shape[1]:",
        "if dim == 0:",
        EMBEDDING,
    ),
    Mutant(
        "embedding",
        "run_explain_neighbours",
        "features = space(training.embed(encoder, padded, size)[:count])",
        "features = training.embed(encoder, padded, size)[:count]",
        ("tests/unit/test_inspecting.py",),
    ),
    # the explain step's nearest-neighbour agreement (test_inspecting's tie-aware recomputation)
    Mutant(
        "embedding",
        "NeighbourAgreement.add",
        "agree = labels[nearest_labels == labels]",
        "agree = nearest_labels[nearest_labels != labels]",
        ("tests/unit/test_inspecting.py",),
    ),
    Mutant(
        "embedding",
        "run_explain_neighbours",
        "agreement.add(labelled_labels[nearest], labels)",
        "agreement.add(labelled_labels[nearest[::-1]], labels)",
        ("tests/unit/test_inspecting.py",),
    ),
    # confusion matrix and the metrics read from it
    Mutant(
        "confusion",
        "evaluation.py::confusion_matrix",
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
        "_evaluate_anywhere(\n                    registry.champion_model_dir(), evaluate\n"
        "                )",
        "candidate_accuracy",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "gate_champion",
        'decide(candidate_accuracy, decision["champion_accuracy"], margin)',
        'decide(candidate_accuracy, decision["champion_accuracy"], 0.0)',
        CHAMPION,
    ),
    Mutant(
        "champion",
        "gate_champion",
        'expected_generation=champion["generation"] if champion else 0',
        "expected_generation=None",
        CHAMPION,
    ),
    Mutant(
        "champion",
        "gate_champion",
        "        if not promote:\n",
        "        if False:\n",
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
        "            current = 0\n        if current != generation:",
        "            current = 0\n        if False:",
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


# Guarding tests of the groups added with the modules that came after the first list. Quick
# selections (`-m "not slow"`) where the behaviour is checked without training.
DURABLE = (
    "tests/cloud/test_durable_gcs.py",
    "tests/reliability/test_cluster_recovery.py",
)
RUN_PARAMETERS = (
    "tests/unit/test_run_parameters.py",
    "tests/pipeline/test_run_parameters.py",
    "tests/cloud/test_submit_run_parameters.py",
    "-m",
    "not slow",
)
SUBSETS = ("tests/unit/test_data_splits.py", "tests/unit/test_data_reader.py")
TRAINJOB = ("tests/cloud/test_trainjob.py", "-m", "not slow")
GATE_OUTCOMES = ("tests/cloud/test_gate_outcomes.py", "tests/cloud/test_registry_champion.py")
WIRING = (
    "tests/pipeline/test_run_parameters.py",
    "tests/pipeline/test_compile.py",
    "tests/pipeline/test_invariants.py",
    "-m",
    "not slow",
)

# Few labels: class-balanced labelled images in SupCon batches, the estimate's pricing of
# the label-spreading candidates and the selection's timings it reads.
BALANCED = (
    "tests/unit/test_data_reader.py",
    "tests/unit/test_training.py",
    "-k",
    "balanced or labelled_images_of_each_class",
)
SPREADING = ("tests/unit/test_estimate.py", "tests/unit/test_probe.py", "-m", "not slow")

MUTANTS += [
    Mutant(
        "few_labels",
        "balanced_batches",
        ".batch(per_class * len(classes), drop_remainder=True)",
        ".batch(per_class * len(classes) - 1, drop_remainder=True)",
        BALANCED,
    ),
    Mutant(
        "few_labels",
        "balanced_batches",
        "tf.data.Dataset.range(len(classes)).repeat()",
        "tf.data.Dataset.range(len(classes) - 1).repeat()",
        BALANCED,
    ),
    Mutant(
        "few_labels",
        "with_balanced_labels",
        "if labelled >= batch_size:",
        "if labelled > batch_size:",
        BALANCED,
    ),
    Mutant(
        "few_labels",
        "_balanced",
        "config.train.labeled_per_class and uses_labels and (labels < 0).any()",
        "config.train.labeled_per_class and (labels < 0).any()",
        BALANCED,
    ),
    Mutant(
        "few_labels",
        "measure_spreading",
        "per_row = max((large - small) / (pools[1] - pools[0]), 0.0)",
        "per_row = max(large / pools[1], 0.0)",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "measure_spreading",
        '"graph_seconds_per_row_squared": graph / pools[1] ** 2,',
        '"graph_seconds_per_row_squared": graph / pools[1],',
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "estimate_run",  # its fitted_seconds
        "if labelled < data.train:",
        "if labelled <= data.train:",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "_select",
        "timings[name] = time.perf_counter() - clock",
        "timings[name] = 0.0",
        SPREADING,
    ),
    # the repeated cross-validation (`train.probe_repeats`) and the estimate's pricing of it
    Mutant(
        "few_labels",
        "_select",
        "stratified_folds(scored_labels, folds, seed + REPEAT_SEED_STEP * repeat)",
        "stratified_folds(scored_labels, folds, seed + REPEAT_SEED_STEP)",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "_scored",
        "return sum(int((fold_of >= 0).sum()) for fold_of in splits)",
        "return int((splits[0] >= 0).sum())",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "_held_out",
        "yield (fold_of != fold) & (fold_of >= 0), fold_of == fold",
        "yield (fold_of != fold), fold_of == fold",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "cv_repeats",
        "return int(min(AUTO_MAX_REPEATS, max(1, wanted)))",
        "return int(max(1, wanted))",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "cv_repeats",
        "wanted = math.ceil(AUTO_SCORED_ROWS / max(int(labelled), 1))",
        "wanted = AUTO_SCORED_ROWS // max(int(labelled), 1)",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "estimate_run",  # its fitted_seconds
        "+ repeats * scored * cost.cv_seconds_per_row",
        "+ scored * cost.cv_seconds_per_row",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "estimate_run",  # its fitted_seconds
        "* (cost.spreading_fixed_seconds + data.train * cost.spreading_seconds_per_row)",
        "* cost.spreading_fixed_seconds + data.train * cost.spreading_seconds_per_row",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "fit_head",
        "repeats=config.train.probe_repeats,",
        "repeats=1,",
        ("tests/unit/test_fitted_classifier.py", "tests/unit/test_tasks.py"),
    ),
    Mutant(
        "few_labels",
        "_select",  # "auto" resolved from the rows the CV scores
        "repeats = cv_repeats(repeats, scored_rows.size)",
        "repeats = cv_repeats(repeats, labelled.size)",
        SPREADING,
    ),
    # the pool's heads preferred within `train.probe_pool_tolerance` standard errors
    Mutant(
        "few_labels",
        "fit_head",
        "pool_tolerance=config.train.probe_pool_tolerance,",
        "",
        ("tests/unit/test_fitted_classifier.py", "tests/unit/test_tasks.py"),
    ),
    Mutant(
        "few_labels",
        "_select",
        "_prefer_pool(results, best, scored_rows.size, pool_tolerance)",
        "_prefer_pool(results, best, _scored(splits), pool_tolerance)",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "_prefer_pool",
        "floor = accuracy - tolerance * standard_error",
        "floor = accuracy - standard_error",
        SPREADING,
    ),
    Mutant(
        "few_labels",
        "_prefer_pool",
        "for name in POOL_PREFERENCE:",
        "for name in reversed(POOL_PREFERENCE):",
        SPREADING,
    ),
]

KFP_SETTERS = ("tests/pipeline/test_kfp_setters.py",)

MUTANTS += [  # the compile's fast task setters (pipelines/kfp_setters.py)
    Mutant(
        "kfp_setters",
        "_FramesOnly.stack",
        "entries, frame = [], sys._getframe(1)",
        "entries, frame = [], sys._getframe(0)",
        KFP_SETTERS,
    ),
    Mutant(
        "kfp_setters",
        "fast_setters",
        "            pipeline_task.inspect = previous",
        "            pass",
        KFP_SETTERS,
    ),
    Mutant(
        "kfp_setters",
        "fast_setters",
        "        pipeline_task.inspect = _FramesOnly()",
        "        pass",
        KFP_SETTERS,
    ),
]

TASK_MAIN = ("tests/pipeline/test_task_main.py",)
TASK_MAIN_RUN = ("tests/pipeline/test_task_main.py", "tests/pipeline/test_local_view.py")

MUTANTS += [  # a local run's task processes (pipelines/task_main.py, pipelines/local/run.py)
    Mutant("task_main", "exit_status", "        return 0", "        return 1", TASK_MAIN),
    Mutant("task_main", "exit_status", "    return 1", "    return 0", TASK_MAIN),
    Mutant("task_main", "task_main.py::main", "        return 130", "        return 1", TASK_MAIN),
    Mutant(
        "task_main",
        "task_main.py::main",
        "    sys.argv = [argv[0], *argv[2:]]",
        "    pass",
        TASK_MAIN,
    ),
    Mutant(
        "task_main",
        "task_main.py::main",
        "        sys.excepthook(*sys.exc_info())\n        return 1\n",
        "        return 1\n",
        TASK_MAIN,
    ),
    Mutant("task_main", "finish", "    os._exit(status)", "    os._exit(0)", TASK_MAIN),
    Mutant(
        "task_main",
        "exit_at_once",
        "                changed += 1",
        "                pass",
        TASK_MAIN,
    ),
    Mutant(
        "task_main",
        "local_pipeline",
        "    exit_at_once(pipeline)",
        "    pass",
        TASK_MAIN_RUN,
    ),
]

DISTILL = ("tests/unit/test_distill.py",)
DISTILL_COST = ("tests/unit/test_estimate.py",)

MUTANTS += [  # self-distillation after the fitted head (training/distill.py, classifier.py)
    Mutant(
        "distill", "teacher_targets", "logits = scores / temperature", "logits = scores", DISTILL
    ),
    Mutant(
        "distill",
        "teacher_targets",
        "        scores = np.log(np.maximum(scores, 1e-12))\n",
        "        scores = scores\n",
        DISTILL,
    ),
    Mutant(
        "distill",
        "teacher_targets",
        "    targets[labelled] = np.eye(num_classes)[labels[labelled]]\n",
        "",
        DISTILL,
    ),
    Mutant("distill", "teacher_targets", "if not temperature > 0:", "if temperature < 0:", DISTILL),
    Mutant("distill", "pool_arrays", "if room < len(batch_labels):", "if False:", DISTILL),
    Mutant("distill", "train_student", "if unlabelled == 0:", "if False:", DISTILL),
    Mutant(
        "distill",
        "train_student",
        "(images, targets),",
        "(images, np.eye(num_classes)[np.maximum(labels, 0)]),",
        DISTILL,
    ),
    Mutant(
        "distill",
        "classifier.py::train_classifier",
        "if config.train.distill_epochs > 0:",
        "if False:",
        DISTILL,
    ),
    Mutant(
        "distill",
        "_trained_is_kept",
        "or trained_accuracy >= fitted_accuracy",
        "or trained_accuracy <= fitted_accuracy",
        DISTILL,
    ),
    Mutant("distill", "_restore_frozen", "    extractor.set_weights(weights)\n", "", DISTILL),
    Mutant(
        "distill",
        "_distill",
        'student_config = config.replace({"augment.weak": views})',
        "student_config = config",
        DISTILL,
    ),
    Mutant(
        "distill",
        "_model_accuracy",
        "right += int((predicted[keep] == labels[keep]).sum())",
        "right += int(keep.sum())",
        DISTILL,
    ),
    Mutant(
        "distill",
        "estimate_run",
        "classifier += seconds(BASELINE, train.distill_epochs, data.train)",
        "pass",
        DISTILL_COST,
    ),
]

# warm task processes (pipelines/task_server.py): refusals, the child's take-over, signals
TASK_SERVER = ("tests/pipeline/test_task_server.py", "-k", "not warm_child")
MUTANTS += [
    Mutant(
        "task_server",
        "differing_variable",
        "sorted(names - set(PER_PROCESS))",
        "sorted(names)",
        TASK_SERVER,
    ),
    Mutant(
        "task_server",
        "differing_variable",
        "name.startswith(IMPORT_VARIABLES)",
        'name.startswith("KERAS_")',
        TASK_SERVER,
    ),
    Mutant(
        "task_server",
        "warm_tasks_wanted",
        'not in ("0", "false", "no", "off")',
        'not in ("0",)',
        TASK_SERVER,
    ),
    Mutant(
        "task_server",
        "_reason_to_refuse",
        'name = differing_variable(request.get("env", {}), environ)',
        "name = None",
        TASK_SERVER,
    ),
    Mutant("task_server", "run_in_server", "os.kill(child, signum)", "pass", TASK_SERVER),
    Mutant(
        "task_server",
        "run_in_server",
        "        os.kill(os.getpid(), -status)\n",
        "",
        TASK_SERVER,
    ),
    Mutant("task_server", "_become_task", 'os.chdir(request["cwd"])', "pass", TASK_SERVER),
    Mutant(
        "task_server",
        "_become_task",
        'os.environ.update(request["env"])',
        "os.environ.update({})",
        TASK_SERVER,
    ),
    Mutant("task_server", "_become_task", "numpy.random.seed()", "pass", TASK_SERVER),
    Mutant(
        "task_server",
        "_Server._accept",
        'request["env"].update(self.set_by_imports)',
        "pass",
        TASK_SERVER,
    ),
    Mutant(
        "task_server",
        "_Server.serve",
        "while not self.stopping and os.getppid() == self.parent:",
        "while not self.stopping:",
        TASK_SERVER,
    ),
    Mutant(
        "task_server",
        "_Server.serve",
        "                    os.kill(pid, signal.SIGKILL)\n",
        "                    pass\n",
        TASK_SERVER,
    ),
    Mutant(
        "task_server",
        "_Server._check_task_process",
        "                    os.kill(pid, signal.SIGKILL)\n",
        "                    pass\n",
        TASK_SERVER,
    ),
    Mutant("task_server", "_Server._reap", '{"status": status}', '{"status": 0}', TASK_SERVER),
    Mutant(
        "task_server",
        "warm_tasks_wanted",
        'return platform.startswith("linux")',
        "return True",
        TASK_SERVER,
    ),
    Mutant("task_server", "wait_while_starting", "if not _running(pid):", "if False:", TASK_SERVER),
    Mutant("task_server", "_running", 'not in ("Z", "X")', 'not in ("X",)', TASK_SERVER),
    Mutant(
        "task_server",
        "task_server.py::serve",
        "            os.unlink(starting_path(path))\n",
        "            pass\n",
        TASK_SERVER,
    ),
    Mutant(
        "task_server",
        "_Server.serve",
        "            os.unlink(starting_path(self.path))\n",
        "            pass\n",
        TASK_SERVER,
    ),
    Mutant(
        "task_server",
        "serving",
        "            os.rmdir(folder)\n",
        "            pass\n",
        TASK_SERVER,
    ),
]

MUTANTS += [
    # durable checkpoints: the step's folder, its failure record, mirror and restore
    Mutant(
        "durable",
        "step_folder",
        'if "{{" in checkpoint_root or not _writable(checkpoint_root):',
        "if not _writable(checkpoint_root):",
        DURABLE,
    ),
    Mutant("durable", "step_folder", 'if not job_id or "{{" in job_id:', "if not job_id:", DURABLE),
    Mutant(
        "durable",
        "step_folder",
        "return storage.join(storage.strip_trailing_slash(checkpoint_root), job_id, step)",
        "return storage.join(storage.strip_trailing_slash(checkpoint_root), step)",
        DURABLE,
    ),
    Mutant(
        "durable",
        "step_folder",
        "return storage.join(parent, CHECKPOINTS_DIR)",
        "return None",
        DURABLE,
    ),
    Mutant("durable", "recording_failures", "    raise_recorded_failure(folder)\n", "", DURABLE),
    Mutant(
        "durable",
        "recording_failures",
        "except permanent_errors() as error:",
        "except Exception as error:",
        DURABLE,
    ),
    Mutant(
        "durable",
        "raise_recorded_failure",
        "    if not storage.exists(path):\n        return\n",
        "    if storage.exists(path):\n        return\n",
        DURABLE,
    ),
    Mutant(
        "durable",
        "restore",
        "if folder is None or (os.path.isdir(local_dir) and os.listdir(local_dir)):",
        "if folder is None:",
        DURABLE,
    ),
    Mutant("durable", "restore", "if not _COPY.match(name):", "if False:", DURABLE),
    Mutant("durable", "restore", "return int(name[6:])", "return int(name[6:]) - 1", DURABLE),
    Mutant(
        "durable",
        "mirror",
        "storage.write_text(storage.join(folder, LATEST), name)",
        "pass",
        DURABLE,
    ),
    Mutant("durable", "mirror", "if old != name:", "if True:", DURABLE),
    Mutant("durable", "clear", "        _remove_folder(folder)\n", "", DURABLE),
    Mutant(
        "durable",
        "mirror_callback",
        "def on_epoch_begin(self, epoch, logs=None):\n            self._mirror()",
        "def on_epoch_begin(self, epoch, logs=None):\n            pass",
        DURABLE,
    ),
    Mutant(
        "durable",
        "_remove_folder",
        'storage.remove(storage.join(folder, *relative.split("/")))',
        "pass",
        DURABLE,
    ),
    # run-parameter checks: every value refused before any request or task
    Mutant(
        "run_parameters",
        "check_run_parameters",
        '        ("epochs", 0),',
        '        ("epochs", -5),',
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        'values["batch_size"] == 1',
        'values["batch_size"] == -1',
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        '"temperature", values, lambda v: v >= 0',
        '"temperature", values, lambda v: v >= -1',
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        '"promotion_margin", values, lambda v: v >= 0',
        '"promotion_margin", values, lambda v: True',
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        "lambda v: 0 <= v < 1",
        "lambda v: 0 <= v <= 1",
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        "lambda v: 0 <= v <= 1",
        "lambda v: 0 <= v <= 2",
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        '("on_error", ON_ERROR),',
        "",
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        '("encoder", ("", *ENCODER_NAMES)),',
        "",
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters", "run_parameters.py::_number", "math.isfinite(v) and ", "", RUN_PARAMETERS
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        "if name in values and not isinstance(values[name], str):",
        "if False:",
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        'if "source" in values and not values["source"].strip():',
        "if False:",
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        '_image_size(values["image_size"])',
        "pass",
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "training_config",
        'config.replace({"train.classifier_mode": classifier_mode}) if classifier_mode else config',
        "config",
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        '        ("retrain_when", RETRAIN_POLICIES),\n',
        "",
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        'values.get("retrain_when", "always") != "always" and not values.get("registry")',
        'values.get("retrain_when", "always") == "changed" and not values.get("registry")',
        RUN_PARAMETERS,
    ),
    Mutant(
        "run_parameters",
        "check_run_parameters",
        'seed=values.get("seed"),',
        "seed=None,",
        RUN_PARAMETERS,
    ),
    # labelled subsets: stratified, nested, seeded; unlabelled never chosen
    Mutant(
        "subsets",
        "labeled_subset",
        "np.flatnonzero(labels >= 0)",
        "np.flatnonzero(labels >= -1)",
        SUBSETS,
    ),
    Mutant(
        "subsets",
        "labeled_subset",
        "int(round(fraction * len(labelled)))",
        "int(fraction * len(labelled))",
        SUBSETS,
    ),
    Mutant("subsets", "labeled_subset", "return np.sort(labelled[", "return (labelled[", SUBSETS),
    Mutant(
        "subsets", "labeled_subset", "if not 0 < fraction <= 1:", "if not 0 < fraction:", SUBSETS
    ),
    Mutant(
        "subsets",
        "labelled_ranking",
        "(np.arange(len(members)) + 0.5) / len(members)",
        "np.arange(len(members)) / len(members)",
        SUBSETS,
    ),
    Mutant("subsets", "labelled_ranking", "due[rng.permutation(members)]", "due[members]", SUBSETS),
    Mutant("subsets", "labelled_ranking", "np.lexsort((ties, due))", "np.argsort(due)", SUBSETS),
    Mutant(
        "subsets", "labelled_ranking", "due[members[due[members].argmin()]] = 0.0", "pass", SUBSETS
    ),
    Mutant(
        "subsets",
        "subset_epoch_examples",
        "return max(count, min_steps * batch_size)",
        "return count",
        SUBSETS,
    ),
    # the TrainJob body (kubeflow/trainer v1alpha1)
    Mutant(
        "trainjob",
        "poll_seconds",
        "if not (math.isfinite(value) and value > 0):",
        "if not value > 0:",
        TRAINJOB,
    ),
    Mutant(
        "trainjob",
        "poll_seconds",
        "        return POLL_SECONDS\n",
        "        return 1.0\n",
        TRAINJOB,
    ),
    Mutant("trainjob", "trainjob_manifest", '"numNodes": num_nodes,', '"numNodes": 1,', TRAINJOB),
    Mutant("trainjob", "trainjob_manifest", "    if gpus_per_node:\n", "    if False:\n", TRAINJOB),
    Mutant(
        "trainjob",
        "trainjob_manifest",
        "{gpu_resource: gpus_per_node}",
        '{"nvidia.com/gpu": gpus_per_node}',
        TRAINJOB,
    ),
    Mutant(
        "trainjob",
        "trainjob_manifest",
        '{"name": key, "value": str(value)}',
        '{"name": key, "value": value}',
        TRAINJOB,
    ),
    Mutant(
        "trainjob", "trainjob_manifest", '"command": list(command),', '"command": [],', TRAINJOB
    ),
    Mutant(
        "trainjob",
        "trainjob_manifest",
        '"kind": "ClusterTrainingRuntime", "name": runtime}',
        '"kind": "ClusterTrainingRuntime", "name": JAX_RUNTIME}',
        TRAINJOB,
    ),
    Mutant(
        "trainjob",
        "trainjob_manifest",
        "if not isinstance(name, str) or not _NAME.match(name):",
        "if not isinstance(name, str):",
        TRAINJOB,
    ),
    Mutant("trainjob", "trainjob_manifest", "num_nodes < 1", "num_nodes < 0", TRAINJOB),
    Mutant(
        "trainjob",
        "trainjob_manifest",
        'metadata = {"name": name, ',
        'metadata = {"name": "contrastive", ',
        TRAINJOB,
    ),
    Mutant(
        "trainjob",
        "trainjob_manifest",
        'pod_spec["serviceAccountName"] = service_account',
        "pass",
        TRAINJOB,
    ),
    Mutant("trainjob", "trainjob_manifest", '"runtimePatches": [patch],', "", TRAINJOB),
    Mutant(
        "trainjob",
        "trainjob_manifest",
        "    if active_deadline_seconds:\n",
        "    if False:\n",
        TRAINJOB,
    ),
    Mutant(
        "trainjob",
        "trainjob_manifest",
        '"name": owner["name"], "uid": owner["uid"]',
        '"name": owner["name"], "uid": ""',
        TRAINJOB,
    ),
    # the champion gate's outcomes: promoted, kept, lost_race, incompatible_champion
    Mutant(
        "gate_outcomes", "gate_champion", "for _ in range(2):", "for _ in range(1):", GATE_OUTCOMES
    ),
    Mutant(
        "gate_outcomes",
        "gate_champion",
        "except DataMismatchError as error:",
        "except ZeroDivisionError as error:",
        GATE_OUTCOMES,
    ),
    Mutant(
        "gate_outcomes",
        "gate_champion",
        '                "incompatible_champion",\n',
        '                "kept",\n',
        GATE_OUTCOMES,
    ),
    Mutant(
        "gate_outcomes",
        "gate_champion",
        "            lost.append(str(error))\n            continue\n",
        "            raise\n",
        GATE_OUTCOMES,
    ),
    Mutant(
        "gate_outcomes",
        "gate_champion",
        "        if lost:\n",
        "        if False:\n",
        GATE_OUTCOMES,
    ),
    Mutant(
        "gate_outcomes",
        "gate_champion",
        '        "lost_race",\n',
        '        "kept",\n',
        GATE_OUTCOMES,
    ),
    Mutant(
        "gate_outcomes",
        "_record",
        'promoted = outcome == "promoted"',
        'promoted = outcome != "kept"',
        GATE_OUTCOMES,
    ),
    Mutant(
        "gate_outcomes",
        "_record",
        "registry.record_decision(run_id, decision)",
        "pass",
        GATE_OUTCOMES,
    ),
    # the pipeline's parameter wiring: each root input reaches the tasks that use it
    Mutant(
        "wiring",
        "build_pipeline",
        "validation_fraction=validation_fraction,",
        "validation_fraction=0.1,",
        WIRING,
    ),
    Mutant(
        "wiring", "build_pipeline", "test_fraction=test_fraction,", "test_fraction=0.2,", WIRING
    ),
    Mutant("wiring", "build_pipeline", "            seed=seed,\n", "            seed=0,\n", WIRING),
    Mutant("wiring", "build_pipeline", "limit=limit,", "limit=0,", WIRING),
    Mutant("wiring", "build_pipeline", "runner=ingest_runner,", 'runner="",', WIRING),
    Mutant(
        "wiring", "build_pipeline", "beam_options=ingest_beam_options,", 'beam_options="",', WIRING
    ),
    Mutant("wiring", "build_pipeline", "image_size=image_size,", 'image_size="",', WIRING),
    Mutant(
        "wiring",
        "build_pipeline",
        "labeled_fraction=labeled_fraction,",
        "labeled_fraction=0.0,",
        WIRING,
    ),
    Mutant("wiring", "build_pipeline", "data_snapshot=data_snapshot,", 'data_snapshot="",', WIRING),
    Mutant(
        "wiring",
        "build_pipeline",
        "common = dict(profile=profile, overrides=overrides,",
        'common = dict(profile=profile, overrides="",',
        WIRING,
    ),
    Mutant(
        "wiring",
        "build_pipeline",
        "batch_size=batch_size, seed=seed)",
        "batch_size=0, seed=seed)",
        WIRING,
    ),
    Mutant(
        "wiring",
        "build_pipeline",
        "training.train_baseline(\n"
        + " " * 32
        + "dataset=dataset,\n"
        + " " * 32
        + "epochs=epochs,",
        "training.train_baseline(\n" + " " * 32 + "dataset=dataset,\n" + " " * 32 + "epochs=0,",
        WIRING,
    ),
    # the pretraining task's, then check-drift's (the step fingerprints the configuration)
    Mutant(
        "wiring",
        "build_pipeline",
        " " * 32 + "temperature=temperature,\n",
        " " * 32 + "temperature=0.0,\n",
        WIRING,
    ),
    Mutant(
        "wiring",
        "build_pipeline",
        "temperature=temperature,\n"
        + " " * 16
        + "encoder=encoder,\n"
        + " " * 16
        + "classifier_mode",
        "temperature=0.0,\n" + " " * 16 + "encoder=encoder,\n" + " " * 16 + "classifier_mode",
        WIRING,
    ),
    Mutant("wiring", "build_pipeline", " " * 32 + "mode=classifier_mode,", 'mode="",', WIRING),
    Mutant(
        "wiring",
        "build_pipeline",
        "classifier_mode=classifier_mode,",
        'classifier_mode="",',
        WIRING,
    ),
    Mutant(
        "wiring", "build_pipeline", "retrain_when=retrain_when,", 'retrain_when="always",', WIRING
    ),
    Mutant(
        "wiring",
        "build_pipeline",
        "checkpoint_root=checkpoint_root,",
        'checkpoint_root="",',
        WIRING,
    ),
    # check-drift's, then compare-and-report's
    Mutant(
        "wiring",
        "build_pipeline",
        "registry=registry,\n                retrain_when",
        'registry="",\n                retrain_when',
        WIRING,
    ),
    Mutant(
        "wiring",
        "build_pipeline",
        "registry=registry,\n                    promotion_margin",
        'registry="",\n                    promotion_margin',
        WIRING,
    ),
    Mutant(
        "wiring",
        "build_pipeline",
        "promotion_margin=promotion_margin,",
        "promotion_margin=0.0,",
        WIRING,
    ),
    Mutant(
        "wiring",
        "build_pipeline",
        "            .set_caching_options(False)\n",
        "",
        WIRING,
    ),
]

# The tests issue 26 sharpened (each could not fail before): one break of the code each names
# (`sharpened_slow`: those whose test is an end-to-end run or a benchmark smoke run).
MUTANTS += [
    Mutant(
        "sharpened_slow",
        "add_fraction",
        '"test_accuracy": evaluation.get("accuracy"),',
        '"test_accuracy": evaluation.get("macro_f1"),',
        ("tests/e2e/test_few_labels.py",),
    ),
    Mutant(
        "sharpened_slow",
        "fit_model",
        "previous_history(checkpoint_dir, finished),",
        "{},",
        ("tests/e2e/test_cached_resumed_run.py", "-k", "keeps_the_epochs"),
    ),
    Mutant(
        "sharpened",
        "ProgressPoller.__exit__",
        "self._stop.set()",
        "pass",
        ("tests/pipeline/test_progress.py",),
    ),
    Mutant(
        "sharpened",
        "in_method_order",
        "return known + sorted(present - set(known), key=str)",
        "return list(names)",
        ("tests/unit/test_registries.py",),
    ),
    Mutant(
        "sharpened",
        "build_pipeline",
        "vertex_model=vertex_model,",
        'vertex_model="",',
        ("tests/cloud/test_submit_cli.py", "-k", "vertex_model_reaches"),
    ),
    Mutant(
        "sharpened",
        "_per_class_section",
        "names = fmt.names_for(class_names, count)",
        "names = [str(index) for index in range(count)]",
        ("tests/unit/test_report.py",),
    ),
    Mutant(
        "sharpened",
        "app.py::main",
        'code = getattr(error, "exit_code", EXIT_USAGE)',
        'code = getattr(error, "exit_code", 1)',
        ("tests/reliability/test_faults.py", "-m", "not slow"),
    ),
    Mutant(
        "sharpened",
        "restore",
        "storage.copy_tree(storage.join(folder, name), local_dir)",
        "pass",
        ("tests/reliability/test_cluster_recovery.py", "-k", "killed_step"),
    ),
    Mutant(
        "sharpened",
        "run_pretrain",
        '"knn_accuracy": _knn(encoder, knn_sample[0], config, layout),',
        '"knn_accuracy": 0.5,',
        ("tests/unit/test_streaming_steps.py", "-k", "whole_split"),
    ),
    Mutant(
        "sharpened",
        "run_pretrain",
        '"final_loss": _last(history, "loss"),',
        '"final_loss": _last(history, "contrastive_loss"),',
        ("tests/components/test_components.py", "-k", "pretrain_component"),
    ),
    Mutant(
        "sharpened",
        "estimate_run",  # its seconds(): a step's epochs
        "views = train.num_views if kind == PRETRAIN else 1",
        "views = 1",
        ("tests/unit/test_estimate.py", "-m", "not slow"),
    ),
    Mutant(
        "sharpened_slow",
        "_ratios",
        '"ratio_of_medians": round(entry["median"] / results[reference]["median"], 3),',
        '"ratio_of_medians": round(results[reference]["median"] / entry["median"], 3),',
        ("bench/test_smoke.py", "-k", "speed"),
    ),
]

# Survivors that are not faults, each with the reason (a list of (group, function, original)).
EXPLAINED: dict[tuple[str, str, str], str] = {}


def locate(function: str) -> tuple[Path, int, int]:
    """`(file, start offset, end offset)` of the one top-level function named `function`, or
    of the one method, for `Class.method`; `file.py::function` looks in files of that name
    only (when several modules define one)."""
    file_name, _, function = function.rpartition("::")
    owner, _, name = function.rpartition(".")
    found = []
    for path in sorted(path for source in SOURCES for path in source.rglob("*.py")):
        if file_name and path.name != file_name:
            continue
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
        raise LookupError(f"function {function!r} found {len(found)} times under {SOURCES}")
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
    parser.add_argument(
        "--pick", default="", help="only mutants whose function or text contains this"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutant")
    args = parser.parse_args(argv)
    groups = {g for g in args.only.split(",") if g}
    unknown = groups - {mutant.group for mutant in MUTANTS}
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}")
    counts: dict[str, int] = {}
    per_group: dict[str, list[int]] = {}
    for mutant in MUTANTS:
        if groups and mutant.group not in groups:
            continue
        if args.pick and args.pick not in mutant.function + mutant.original:
            continue
        outcome = run_mutant(mutant, args.timeout)
        explained = EXPLAINED.get((mutant.group, mutant.function, mutant.original))
        if outcome == "SURVIVED" and explained:
            outcome = f"survived, explained: {explained}"
        kind = outcome.split(":")[0].split(" ")[0].split(",")[0]
        counts[kind] = counts.get(kind, 0) + 1
        tally = per_group.setdefault(mutant.group, [0, 0])
        tally[0] += kind == "killed"
        tally[1] += 1
        print(
            f"{mutant.group:9s} {mutant.function}: {mutant.original!r} -> {mutant.mutated!r}: "
            f"{outcome}",
            flush=True,
        )
    for group, (killed, total) in per_group.items():
        print(f"group {group}: {killed}/{total} killed")
    print("summary:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 1 if counts.get("SURVIVED") or counts.get("stale") or counts.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
