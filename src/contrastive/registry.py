"""Champion/challenger model registry in a folder or under `gs://bucket/prefix`.

Layout under the root:

    champion.json               the current champion (the only mutable file)
    versions/<run-id>/...       a copy of each promoted model directory, `COMPLETE` last
    decisions/<run-id>.json     why each candidate was or was not promoted

Promotion copies the model first and switches `champion.json` last, with a compare-and-swap
(GCS `ifGenerationMatch`; locally an `O_EXCL` lock and a content check), so a crash between
the two leaves the old champion in place, and two pipelines promoting at once cannot both
win: the second gets `ConcurrentUpdateError` and must re-evaluate against the new champion.

`champion.json`:
    {"generation": 3, "version": "<run-id>", "run_id": "<run-id>",
     "model_uri": ".../versions/<run-id>", "metric": "test_accuracy", "score": 0.91,
     "promoted_at": "2026-...Z",
     "previous_version": "<run-id>" | null, "extra": {...}}
`generation` counts promotions (0: no champion yet); `expected_generation` refers to it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from contrastive import storage, validation
from contrastive.modeldir import COMPLETE_MARKER

log = logging.getLogger(__name__)

CHAMPION_FILE = "champion.json"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ConcurrentUpdateError(RuntimeError):
    """The champion changed between reading it and switching it: decide again."""


class Decision(NamedTuple):
    """Outcome of the gate: `promote, reason = decide(...)`."""

    promote: bool
    reason: str


def decide(
    candidate_score: float,
    champion_score: float | None,
    margin: float = 0.0,
    *,
    higher_is_better: bool = True,
) -> Decision:
    """Promote when there is no champion, or the candidate beats it by more than `margin`.

    Args:
        candidate_score: the new model's score on the current test split.
        champion_score: the champion's score on the same split; None when there is none.
        margin: how much better the candidate must be (>= 0), against noise-level wins.
        higher_is_better: False for losses and error rates.

    Returns:
        `Decision(promote, reason)`; the reason quotes both scores.
    """
    _check_finite("candidate_score", candidate_score)
    _check_finite("margin", margin)
    if margin < 0:
        raise ValueError(f"margin must be >= 0. Received: margin={margin}")
    if champion_score is None:
        return Decision(True, f"no champion yet; candidate scores {candidate_score:.6g}")
    _check_finite("champion_score", champion_score)
    if higher_is_better:
        better = candidate_score > champion_score + margin
        relation = ">" if better else "<="
        bound = f"champion {champion_score:.6g} + margin {margin:.6g}"
    else:
        better = candidate_score < champion_score - margin
        relation = "<" if better else ">="
        bound = f"champion {champion_score:.6g} - margin {margin:.6g}"
    verdict = "promote" if better else "keep champion"
    return Decision(better, f"{verdict}: candidate {candidate_score:.6g} {relation} {bound}")


def _check_finite(name: str, value: Any) -> None:
    validation.check_finite(name, value)


def _check_run_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(
            "run_id must be 1-128 letters, digits, '.', '_' or '-' (it names a folder). "
            f"Received: run_id={run_id!r}"
        )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ModelRegistry:
    """Champion pointer, promoted versions and gate decisions under `root`.

    Args:
        root: a local folder or `gs://bucket/prefix`.
        client: optional `google.cloud.storage.Client` for gs:// roots.
    """

    def __init__(self, root: str | os.PathLike, *, client: Any = None) -> None:
        self.root = os.fspath(root).rstrip("/") or "/"
        self._client = client

    def __repr__(self) -> str:
        return f"ModelRegistry({self.root!r})"

    @property
    def champion_uri(self) -> str:
        return storage.join(self.root, CHAMPION_FILE)

    def version_dir(self, run_id: str) -> str:
        _check_run_id(run_id)
        return storage.join(self.root, "versions", run_id)

    def decision_uri(self, run_id: str) -> str:
        _check_run_id(run_id)
        return storage.join(self.root, "decisions", f"{run_id}.json")

    def champion(self) -> dict | None:
        """The current champion record, or None before the first promotion."""
        record, _ = self._read_champion()
        return record

    def champion_model_dir(self) -> str | None:
        """URI of the champion's model directory (to evaluate it on a new test split)."""
        record = self.champion()
        return record["model_uri"] if record else None

    def _read_champion(self) -> tuple[dict | None, int]:
        data, token = storage.read_with_generation(self.champion_uri, client=self._client)
        if data is None:
            return None, token
        try:
            record = json.loads(data)
        except ValueError as err:
            raise ValueError(f"{self.champion_uri} is not valid JSON: {err}") from None
        return record, token

    def promote(
        self,
        run_id: str,
        model_dir: str | os.PathLike,
        score: float,
        metric: str = "test_accuracy",
        extra: Mapping[str, Any] | None = None,
        expected_generation: int | None = None,
        *,
        require_complete: bool = True,
    ) -> dict:
        """Makes the model in `model_dir` the champion.

        Copies every file of `model_dir` to `versions/<run_id>/` (`COMPLETE` last), then
        switches `champion.json` with a compare-and-swap.

        Args:
            run_id: the pipeline run that trained the model; names the version folder.
            model_dir: local or gs:// model directory (with a `COMPLETE` marker).
            score: the candidate's `metric` on the test split the gate used.
            extra: more JSON-able fields to keep in the record (under `"extra"`).
            expected_generation: the champion `generation` the decision was made against
                (0: there was no champion). None: accept whatever is current now.
            require_complete: refuse a model directory without a `COMPLETE` marker.

        Returns:
            The new champion record.

        Raises:
            ConcurrentUpdateError: the champion changed since `expected_generation`, or
                while the model was being copied. The old champion stays.
            FileNotFoundError: `model_dir` is empty or has no `COMPLETE` marker.
        """
        _check_run_id(run_id)
        _check_finite("score", score)
        model_dir = os.fspath(model_dir)
        files = storage.list_files(model_dir, client=self._client)
        if not files:
            raise FileNotFoundError(f"model directory is empty or missing: {model_dir}")
        if require_complete and COMPLETE_MARKER not in files:
            raise FileNotFoundError(
                f"model directory has no {COMPLETE_MARKER} marker (training did not finish?): "
                f"{model_dir}"
            )

        current, token = self._read_champion()
        current_generation = int(current["generation"]) if current else 0
        if expected_generation is not None and expected_generation != current_generation:
            raise ConcurrentUpdateError(
                f"champion is at generation {current_generation}, the decision was made "
                f"against generation {expected_generation}; evaluate again"
            )

        destination = self.version_dir(run_id)
        storage.copy_tree(model_dir, destination, last=COMPLETE_MARKER, client=self._client)
        if COMPLETE_MARKER not in files:
            storage.write_text(
                storage.join(destination, COMPLETE_MARKER), _now() + "\n", client=self._client
            )

        record = {
            "generation": current_generation + 1,
            "version": run_id,
            "run_id": run_id,
            "model_uri": destination,
            "metric": metric,
            "score": float(score),
            "promoted_at": _now(),
            "previous_version": current["version"] if current else None,
            "extra": dict(extra or {}),
        }
        self._switch_pointer(record, token)
        return record

    def _switch_pointer(self, record: dict, token: int) -> None:
        """Replaces `champion.json` only if it is still the one read as `token`."""
        data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8")
        try:
            storage.write_if_generation_match(self.champion_uri, data, token, client=self._client)
        except storage.PreconditionFailedError as err:
            raise ConcurrentUpdateError(
                f"champion changed while promoting {record['run_id']}: {err}"
            ) from None

    def record_decision(self, run_id: str, decision: Decision | tuple | Mapping[str, Any]) -> str:
        """Writes `decisions/<run_id>.json` and returns its URI.

        `decision` is a `Decision` / `(promote, reason)` tuple, or a mapping with at least
        `promote` and `reason` (scores, champion generation... are kept as given).
        """
        if isinstance(decision, Mapping):
            body = dict(decision)
        else:
            promote, reason = decision
            body = {"promote": bool(promote), "reason": str(reason)}
        if "promote" not in body or "reason" not in body:
            raise ValueError(f"decision needs 'promote' and 'reason'. Received: {decision!r}")
        body = {"run_id": run_id, "decided_at": _now(), **body}
        uri = self.decision_uri(run_id)
        storage.write_json(uri, body, client=self._client)
        return uri

    def decision(self, run_id: str) -> dict | None:
        """The recorded decision for `run_id`, or None."""
        try:
            return storage.read_json(self.decision_uri(run_id), client=self._client)
        except FileNotFoundError:
            return None


def gate_champion(
    registry_root: str,
    candidate: str,
    candidate_accuracy: float,
    candidate_dir: str,
    *,
    run_id: str,
    margin: float,
    evaluate: Callable[[str], float],
    publish: Callable[[str, str], dict] | None = None,
    attachments: Callable[[], dict[str, bytes]] | None = None,
) -> dict:
    """Re-evaluate the champion on this run's test split; promote the candidate if it wins.

    A promotion also writes a KServe `InferenceService` manifest for the new champion next to
    `champion.json` and, with `publish`, hands the promoted SavedModel to a model registry
    (the pipeline target's publisher, `contrastive.environment.publisher`: Vertex AI's Model
    Registry); both are recorded in the decision.

    Args:
        registry_root: a local folder or gs:// prefix holding `champion.json`.
        candidate: the candidate's method name (kept in the record).
        candidate_accuracy: its test accuracy.
        candidate_dir: its local model directory.
        run_id: names the version folder and the decision file.
        margin: the candidate must beat the champion by more than this.
        evaluate: local model directory -> test accuracy on this run's split.
        publish: `publish(saved_model_uri, run_id)` after a promotion; the entries of the
            dict it returns join the decision (Vertex: `vertex_model`). None: nothing.
        attachments: called once, when promoting: file name -> bytes, written into the new
            version's folder before its `COMPLETE` marker (e.g. the drift reference).

    Every outcome is recorded, with its reason, in `decision["outcome"]`: `promoted`, `kept`
    (the champion wins), `lost_race` (another run promoted while this one was gating: the gate
    runs again against the new champion once, then gives up without promoting) and
    `incompatible_champion` (the champion does not fit this dataset, e.g. another class count:
    nothing is promoted; point the run at another registry).

    Returns:
        The decision dict, also written to `decisions/<run_id>.json`.
    """
    from contrastive.modeldir import DataMismatchError

    registry = ModelRegistry(registry_root)
    lost: list[str] = []
    attached: dict[str, bytes] | None = None
    for _ in range(2):  # a lost race is decided once more against the new champion
        champion = registry.champion()
        decision = {
            "candidate": candidate,
            "candidate_accuracy": candidate_accuracy,
            "champion_accuracy": None,
            "margin": margin,
            "champion_run_id": champion.get("run_id") if champion else None,
        }
        try:
            if champion is not None:
                decision["champion_accuracy"] = _evaluate_anywhere(
                    registry.champion_model_dir(), evaluate
                )
        except DataMismatchError as error:
            return _record(
                registry,
                run_id,
                decision,
                "incompatible_champion",
                f"keep champion: it cannot be compared on this dataset ({error}); "
                "nothing promoted, use another registry for this dataset",
            )
        promote, reason = decide(candidate_accuracy, decision["champion_accuracy"], margin)
        if not promote:
            return _record(registry, run_id, decision, "kept", reason)
        if attached is None:
            attached = attachments() if attachments else {}
        try:
            promote_with_export(
                registry,
                run_id,
                candidate_dir,
                candidate_accuracy,
                candidate,
                expected_generation=champion["generation"] if champion else 0,
                attachments=attached,
            )
        except ConcurrentUpdateError as error:
            log.warning("lost the promotion race (%s); deciding again", error)
            lost.append(str(error))
            continue
        decision["inference_service"] = write_inference_service(registry, run_id)
        if publish is not None:
            saved_model = storage.join(registry.version_dir(run_id), "saved_model")
            decision.update(publish(saved_model, run_id))
        if lost:
            reason = f"{reason} (after losing a promotion race: {lost[0]})"
        return _record(registry, run_id, decision, "promoted", reason)
    return _record(
        registry,
        run_id,
        decision,
        "lost_race",
        "not promoted: another run promoted while this one was gating, twice; last: " + lost[-1],
    )


def _record(registry, run_id: str, fields: dict, outcome: str, reason: str) -> dict:
    """The decision with its outcome and reason, written to `decisions/<run_id>.json`."""
    promoted = outcome == "promoted"
    decision = {"promoted": promoted, "promote": promoted, **fields}
    decision.update(outcome=outcome, reason=reason)
    registry.record_decision(run_id, decision)
    return decision


def write_inference_service(registry, run_id: str) -> str | None:
    """KServe manifest of the new champion next to `champion.json`; None without a SavedModel."""
    import yaml

    from contrastive.serving import INFERENCE_SERVICE_FILE, KSERVE_DIR, inference_service

    served = storage.join(registry.version_dir(run_id), KSERVE_DIR)
    if not storage.exists(storage.join(served, "1", "saved_model.pb")):
        return None
    manifest_uri = storage.join(registry.root, INFERENCE_SERVICE_FILE)
    # A local registry: an absolute path (the cluster needs that folder copied or mounted).
    manifest = inference_service(
        served if not storage.is_local(served) else os.path.abspath(served), run_id=run_id
    )
    storage.write_text(manifest_uri, yaml.safe_dump(manifest, sort_keys=False))
    return manifest_uri


def promote_with_export(
    registry, run_id, model_dir, score, method, *, expected_generation, attachments=None
):
    """Promote a copy of `model_dir` with a serving SavedModel (uint8 images in) beside it,
    exported on the TensorFlow backend whichever backend trained the model
    (`export.export_model_dir`): every promoted version can be served. The `attachments`
    (file name -> bytes) are written into the version before its `COMPLETE` marker."""
    from contrastive.export import export_model_dir
    from contrastive.serving import KSERVE_DIR

    with tempfile.TemporaryDirectory(prefix="promote-") as staging:
        bundle = Path(staging) / "model"
        shutil.copytree(model_dir, bundle, ignore=shutil.ignore_patterns("checkpoints"))
        export_model_dir(model_dir, str(bundle / "saved_model"))
        # TF Serving (KServe) wants numbered versions below its base path.
        shutil.copytree(bundle / "saved_model", bundle / KSERVE_DIR / "1")
        for name, data in (attachments or {}).items():
            (bundle / name).write_bytes(data)
        (bundle / COMPLETE_MARKER).touch()
        registry.promote(
            run_id, bundle, score, extra={"method": method}, expected_generation=expected_generation
        )


def _evaluate_anywhere(model_uri: str, evaluate: Callable[[str], float]) -> float:
    """`evaluate` a model directory that may live in object storage (copied locally first)."""
    if not storage.is_gcs(model_uri):
        return evaluate(model_uri)
    with tempfile.TemporaryDirectory(prefix="champion-") as local:
        storage.copy_tree(model_uri, local)
        return evaluate(local)
