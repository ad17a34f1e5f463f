"""Where a local run's output goes: each task's log file (`TaskLogs`), TensorFlow's start-up
notices filtered out of what the user sees (`is_notice`, `native_notices_filtered`), and the
last lines of a task's log (`log_tail`, `without_frames`, `failure_cause`) for the failure
report."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from pathlib import Path

# What TensorFlow, absl and oneDNN print at start-up: kept in the log files, not shown.
_NOTICES = re.compile(
    r"^\s*(?:"
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"  # absl INFO and WARNING lines
    r"|E\d{4} [\d:.]+\s+\d+ \S+:\d+\] oneDNN"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r")"
)
# kfp.local's own lines in a task's log: its logger's records and the separators.
_KFP_FRAMING = re.compile(r"^(?:\d\d:\d\d:\d\d\.\d{3} - [A-Z]+ - |-{20,}$)")
# The line before the executor input kfp.local's executor prints as indented JSON.
_EXECUTOR_INPUT = "]: Got executor_input:"


def is_notice(line: str) -> bool:
    """A start-up notice of TensorFlow, absl or oneDNN (not an error of ours)."""
    return bool(_NOTICES.match(line))


def log_tail(path: str | Path, lines: int | None = 30) -> list[str]:
    """The last `lines` lines a task printed (None: all), from its log file: without start-up
    notices and kfp.local's framing (its records, separators and the executor input it dumps
    as JSON), the 4-space indent kfp.local adds removed."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    shown, in_input = [], False
    for line in text.splitlines():
        line = line[4:] if line.startswith("    ") else line
        if in_input:
            in_input = line != "}"  # the JSON's closing brace ends the dump
        elif _EXECUTOR_INPUT in line:
            in_input = True
        elif line.strip() and not is_notice(line) and not _KFP_FRAMING.match(line):
            shown.append(line)
    return shown if lines is None else shown[-lines:]


_TRACEBACK = "Traceback (most recent call last)"
_FRAME = re.compile(r'^(\s*)File "')
_DOTTED_ERROR = re.compile(r"^(?:[a-z_]\w*\.)+(?=[A-Z]\w*(?::|$))")


def without_frames(lines: list[str]) -> list[str]:
    """`lines` without Python traceback frames: the `Traceback (most recent call last):`
    headers, each `File "...", line N, in f` line and the source and `^^^` lines under it. The
    exception lines (and "During handling of the above exception ...") stay."""
    kept, frame_indent = [], None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if line.startswith(_TRACEBACK):
            continue
        if match := _FRAME.match(line):
            frame_indent = len(match.group(1))
            continue
        if frame_indent is not None and indent > frame_indent:
            continue  # the frame's source line and its markers
        frame_indent = None
        kept.append(line)
    return kept


def failure_cause(lines: list[str]) -> str:
    """The one line that says why a task failed: the exception line of the last traceback in
    its log (`DataError: ...`, the exception's module path dropped), else its last line."""
    starts = [index for index, line in enumerate(lines) if line.startswith(_TRACEBACK)]
    if starts:
        for line in without_frames(lines[starts[-1] :]):
            if line.strip():
                return _DOTTED_ERROR.sub("", line.strip())
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


class TaskLogs:
    """Where the output of a local run goes while it runs: the current task's log file
    (`<folder>/<task>.log`, appended: a retry adds to it), else `<folder>/pipeline.log`.

    `capturing()` puts it in place of `sys.stdout` and `sys.stderr`: kfp.local prints each
    task's subprocess output and logs its own records there. With `echo`, every whole line
    that is not a start-up notice is also written to `echo` (`--verbose`).
    """

    def __init__(self, folder: str | Path, echo=None):
        self.folder = Path(folder)
        self.echo = echo
        self._task: str | None = None
        self._file = None
        self._pending = ""
        self._lock = threading.Lock()

    def path(self, task: str | None) -> Path:
        return self.folder / f"{task or 'pipeline'}.log"

    def switch(self, task: str | None) -> None:
        """Send what follows to `task`'s log (None: the pipeline's)."""
        with self._lock:
            self._flush_pending()
            if self._file is not None:
                self._file.close()
            self._task = task
            self._file = open(self.path(task), "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def write(self, text: str) -> int:
        with self._lock:
            if self._file is None:
                self._file = open(self.path(self._task), "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self._file.write(text)
            if self.echo is not None:
                self._pending += text
                *lines, self._pending = self._pending.split("\n")
                for line in lines:
                    if not is_notice(line):
                        self.echo.write(line + "\n")
                self.echo.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        with self._lock:
            self._flush_pending()
            if self._file is not None:
                self._file.close()
                self._file = None

    @contextlib.contextmanager
    def capturing(self):
        """Inside the block `sys.stdout`, `sys.stderr` and the root logger's stream handlers
        (kfp.local logs its cache hits there) write here."""
        import logging

        saved = sys.stdout, sys.stderr
        handlers = [
            (handler, handler.setStream(self))
            for handler in logging.getLogger().handlers
            if type(handler) is logging.StreamHandler
        ]
        sys.stdout = sys.stderr = self
        try:
            yield self
        finally:
            sys.stdout, sys.stderr = saved
            for handler, stream in handlers:
                handler.setStream(stream)
            self.close()

    def _flush_pending(self) -> None:
        if self.echo is not None and self._pending:
            if not is_notice(self._pending):
                self.echo.write(self._pending + "\n")
            self._pending = ""


@contextlib.contextmanager
def native_notices_filtered():
    """Inside the block file descriptor 2 goes to a temporary file; after it, every line but
    the start-up notices of TensorFlow, absl and oneDNN (written by C++ straight to fd 2, so
    `TF_CPP_MIN_LOG_LEVEL` does not hide them all) goes to `sys.stderr`."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            for line in text.splitlines():
                if not is_notice(line):
                    print(line, file=sys.stderr)
