"""The view of a local run (`contrastive run`): one line per task of the DAG with its state
(waiting, running, cached, done, failed); for a training task the epoch `k/n`, the last loss,
the validation metric and an ETA; the run's elapsed time.

`RunView` holds the states; a renderer shows them: `LiveRenderer` (rich `Live`, redrawn in
place, for a terminal) or `PlainRenderer` (one line per state change and per epoch, for CI
logs and `| tee`). `ProgressPoller` reads the training steps' progress files
(`contrastive.training.callbacks.ProgressLog`) into the view.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

WAITING, RUNNING, CACHED, DONE, FAILED = "waiting", "running", "cached", "done", "failed"
STATES = (WAITING, RUNNING, CACHED, DONE, FAILED)
# The validation figure a training line shows: the first of these in the epoch's logs.
METRICS = ("val_accuracy", "val_knn_accuracy", "knn_accuracy", "val_probe_accuracy", "val_loss")
POLL_SECONDS = 0.5


def clock(seconds: float) -> str:
    """`m:ss` (or `h:mm:ss` from an hour on), e.g. 75 -> `1:15`."""
    whole = max(int(round(seconds)), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass
class TaskState:
    """One task of the run as the view shows it."""

    name: str
    state: str = WAITING
    started: float | None = None
    ended: float | None = None
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    metric: tuple[str, float] | None = None
    epoch_seconds: list[float] = field(default_factory=list)

    def eta(self) -> float | None:
        """Seconds left: the mean epoch time of this run times the epochs left."""
        if not self.epochs or not self.epoch_seconds or self.epoch >= self.epochs:
            return None
        mean = sum(self.epoch_seconds) / len(self.epoch_seconds)
        return mean * (self.epochs - self.epoch)

    def training(self) -> str:
        """`epoch 2/4  loss 4.812  val_accuracy 0.871  ETA 1:10` (empty before an epoch)."""
        if not self.epoch:
            return ""
        parts = [f"epoch {self.epoch}/{self.epochs}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.metric is not None:
            parts.append(f"{self.metric[0]} {self.metric[1]:.3f}")
        if self.state == RUNNING and (eta := self.eta()) is not None:
            parts.append(f"ETA {clock(eta)}")
        return "  ".join(parts)

    def describe(self, now: float) -> str:
        """The state and what goes with it, e.g. `done in 0:12`, `running 0:03  epoch 1/4 ...`."""
        if self.state == WAITING or self.state == CACHED:
            return self.state
        if self.state == RUNNING:
            text = f"running {clock(now - self.started)}"
        else:
            text = f"{self.state} in {clock(self.ended - self.started)}"
        return "  ".join(part for part in (text, self.training()) if part)


class RunView:
    """The state of every task of a run; each change is passed to `renderer.changed`.

    Thread-safe: the pipeline's thread reports task states, the poller's thread epochs, a
    live renderer's thread reads `snapshot`.

    Args:
        names: the tasks, in the order they run.
        renderer: anything with `changed(view, task, line)`; `line` is the plain text of the
            change (state or epoch).
        clock: seconds, monotonic (a test passes its own).
    """

    def __init__(self, names: Iterable[str], renderer=None, *, clock=time.monotonic):
        self.tasks = {name: TaskState(name) for name in names}
        self.renderer = renderer
        self.clock = clock
        self.started = clock()
        self._lock = threading.RLock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def start(self, name: str) -> None:
        with self._lock:
            task = self._task(name)
            task.state, task.started, task.ended = RUNNING, self.clock(), None
            self._changed(task, RUNNING)

    def cached(self, name: str) -> None:
        with self._lock:
            task = self._task(name)
            task.state = CACHED
            self._changed(task, CACHED)

    def finish(self, name: str, ok: bool) -> None:
        with self._lock:
            task = self._task(name)
            task.state, task.ended = (DONE if ok else FAILED), self.clock()
            if task.started is None:
                task.started = task.ended
            # With the last epoch's figures: a plain view leaves out that epoch's own line.
            self._changed(task, task.describe(task.ended))

    def epoch(self, name: str, record: dict) -> None:
        """One `ProgressLog` record: `{"epoch", "epochs", "seconds", "logs"}`."""
        with self._lock:
            task = self._task(name)
            logs = record.get("logs") or {}
            task.epoch, task.epochs = int(record["epoch"]), int(record.get("epochs") or 0)
            if record.get("seconds") is not None:
                task.epoch_seconds.append(float(record["seconds"]))
            task.loss = logs.get("loss")
            task.metric = next(((key, logs[key]) for key in METRICS if key in logs), None)
            self._changed(task, task.training())

    def running(self) -> str | None:
        with self._lock:
            return next((t.name for t in self.tasks.values() if t.state == RUNNING), None)

    def failed(self) -> str | None:
        with self._lock:
            return next((t.name for t in self.tasks.values() if t.state == FAILED), None)

    def snapshot(self) -> tuple[float, list[tuple[str, str, str]]]:
        """(elapsed, [(name, state, description)]) taken at one instant."""
        with self._lock:
            now = self.clock()
            rows = [(t.name, t.state, t.describe(now)) for t in self.tasks.values()]
            return now - self.started, rows

    def states(self) -> str:
        """`ingest done, train-baseline failed, ...`: every task's state on one line."""
        with self._lock:
            return ", ".join(f"{t.name} {t.state}" for t in self.tasks.values())

    def _task(self, name: str) -> TaskState:
        if name not in self.tasks:  # a task the DAG listing did not show: add it at the end
            self.tasks[name] = TaskState(name)
        return self.tasks[name]

    def _changed(self, task: TaskState, line: str) -> None:
        if self.renderer is not None:
            self.renderer.changed(self, task, line)


class PlainRenderer:
    """One line per change: `  0:04 pretrain-supcon     epoch 1/4  loss 5.12  ...`; the
    last epoch's figures come on the task's `done in` (or `failed in`) line.

    Args:
        write: takes one line (without newline), e.g. `print`.
        width: the task-name column's width.
    """

    def __init__(self, write: Callable[[str], None], width: int = 18):
        self.write = write
        self.width = width

    def changed(self, view: RunView, task: TaskState, line: str) -> None:
        if task.state == RUNNING and task.epochs and task.epoch == task.epochs:
            return  # the last epoch: its figures come with the `done in` line a moment later
        self.write(f"{clock(view.elapsed()):>7} {task.name:<{self.width}} {line}".rstrip())

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


_STYLE = {WAITING: "dim", RUNNING: "bold cyan", CACHED: "blue", DONE: "green", FAILED: "bold red"}
_MARK = {WAITING: "·", RUNNING: "▶", CACHED: "≡", DONE: "✓", FAILED: "✗"}


class LiveRenderer:
    """The whole view redrawn in place (rich `Live`, 4 times a second) on `console`."""

    def __init__(self, view_title: str, console):
        self.title = view_title
        self.console = console
        self.view: RunView | None = None
        self.live = None

    def changed(self, view: RunView, task: TaskState, line: str) -> None:
        # No refresh here: this runs under the view's lock, and Live's own thread holds its
        # lock while it reads the view; the next automatic refresh (a quarter second) shows it.
        self.view = view

    def attach(self, view: RunView) -> LiveRenderer:
        self.view = view
        return self

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(overflow="ellipsis", no_wrap=True)
        if self.view is None:
            return table
        elapsed, rows = self.view.snapshot()
        for name, state, text in rows:
            style = _STYLE[state]
            table.add_row(Text(_MARK[state], style), Text(name, style), text)
        heading = Text.assemble((self.title, "bold"), f"  elapsed {clock(elapsed)}")
        return Group(heading, table)

    def __enter__(self):
        from rich.live import Live

        self.live = Live(
            self,
            console=self.console,
            refresh_per_second=4,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        live, self.live = self.live, None
        live.refresh()
        live.__exit__(*exc)


class ProgressPoller:
    """Reads the running task's progress file (`<folder>/<task>.jsonl`) into the view every
    `POLL_SECONDS`, on a daemon thread; `drain(task)` reads what is left (at a task's end).
    A file that never appears (a step that is not training, or died) is simply not read."""

    def __init__(self, folder: str | Path, view: RunView, interval: float = POLL_SECONDS):
        self.folder = Path(folder)
        self.view = view
        self.interval = interval
        self._offsets: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-poller", daemon=True)

    def __enter__(self) -> ProgressPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5 * self.interval + 1)

    def drain(self, name: str) -> None:
        with self._lock:
            path = self.folder / f"{name}.jsonl"
            try:
                with open(path, "rb") as stream:
                    stream.seek(self._offsets.get(name, 0))
                    data = stream.read()
            except FileNotFoundError:
                return
            complete = data[: data.rfind(b"\n") + 1]  # a line being written waits
            self._offsets[name] = self._offsets.get(name, 0) + len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "epoch" in record:
                    self.view.epoch(name, record)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            name = self.view.running()
            if name is not None:
                self.drain(name)
