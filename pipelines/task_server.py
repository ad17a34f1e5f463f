"""Warm task processes for a local run: one interpreter imports TensorFlow and Keras once, then
forks a process for each task.

Every task of a local run is a fresh `python3 -m pipelines.task_main kfp.dsl.executor_main ...`
(kfp.local's subprocess runner), and each spends about 5 s of its 6–13 s importing
TensorFlow, Keras and the library before the step starts. `contrastive run` therefore starts
this server beside the run (`serving`): it imports `PRELOAD` once, runs no TensorFlow or JAX
operation (so no runtime thread pool, device or session exists yet), and listens on a Unix
socket named by `SERVER_VARIABLE` in the tasks' environment. The task's own process
(`pipelines.task_main`) then hands its command line, working directory, environment,
`sys.path` and standard streams to the server (`run_in_server`); the server forks a child
that takes them over and runs kfp's executor exactly as the task process would have, while
the task process waits and exits with the child's status (or dies by the same signal). What
kfp.local sees is unchanged: the same process, its output on the same pipes, the same status.

A task that comes while the server still imports waits for it (`wait_while_starting`, at most
`STARTING_SECONDS`, no longer once the server's import has failed or it died). A task runs in
its own fresh process instead (as without the server) when the server is not there, or when
the task's environment differs from the server's in a variable read at import
(`IMPORT_VARIABLES`, e.g. `KERAS_BACKEND`), or its interpreter is another one; the server's
refusal names the variable. A task process that dies (even by SIGKILL) takes its
child with it: the server kills a child whose task process has gone. The server ends with
its run, or when its parent process has gone.

The server is single-threaded (a `select` loop): a fork copies one thread, so no lock can be
held by a thread the child lacks. Each child re-seeds what a fresh process seeds from the
system (NumPy's global generator; Python's `random` re-seeds itself after a fork).

Only the client half (`run_in_server`) runs in a task process: this module imports nothing
heavy at its top.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping

# The task processes' variable naming the server's socket (absent: no server).
SERVER_VARIABLE = "CONTRASTIVE_TASK_SERVER"
# `contrastive run`'s switch: 0 / false / no / off start no server (every task imports afresh);
# unset: on Linux, off elsewhere (`warm_tasks_wanted`).
WARM_VARIABLE = "CONTRASTIVE_WARM_TASKS"
# What the server imports once: the backend (through keras), the library's step functions and
# kfp's executor; a task imports its component and anything else itself.
PRELOAD = ("tensorflow", "keras", "contrastive.tasks", "kfp.dsl.executor_main")
# Environment variables read while those modules import (a backend, its devices and flags,
# the interpreter's start-up): a task whose value differs from the server's runs afresh.
IMPORT_VARIABLES = ("KERAS_", "TF_", "XLA_", "JAX_", "CUDA_", "TPU_", "PYTHON", "LD_", "OMP_")
# Set per process by the interpreter, not at import: a task's value is applied in its child.
PER_PROCESS = ("PYTHONUNBUFFERED",)
# How long a task process waits to connect and for the server's answer (the fork), seconds;
# it then waits for its child as long as the child runs.
CONNECT_SECONDS = 5.0
# How long a task process waits for a server that is still importing (`starting_path` names
# its process), seconds: about the import the task would otherwise do itself, so the first
# tasks of a run do not import TensorFlow a second time beside the server.
STARTING_SECONDS = 60.0
ANSWER_SECONDS = 60.0
# The server's check that its parent (the run) is still there, seconds.
PARENT_CHECK_SECONDS = 1.0
_LENGTH = struct.Struct("!I")


class Refused(Exception):
    """The server cannot run this task (the message says why): the task runs afresh."""


def warm_tasks_wanted(environ: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether `contrastive run` starts the server: `WARM_VARIABLE` (0/false/no/off: no),
    by default on Linux only (macOS forbids some system frameworks in a forked child once
    loaded, and Windows has no fork): elsewhere `CONTRASTIVE_WARM_TASKS=1` asks for it."""
    value = environ.get(WARM_VARIABLE, "").strip().lower()
    if not value:
        return platform.startswith("linux")
    return value not in ("0", "false", "no", "off")


def differing_variable(task: Mapping[str, str], server: Mapping[str, str]) -> str | None:
    """The first variable read at import (`IMPORT_VARIABLES`) whose value differs between a
    task's environment and the server's, as `NAME` (None: none differs)."""
    names = {name for name in (*task, *server) if name.startswith(IMPORT_VARIABLES)}
    for name in sorted(names - set(PER_PROCESS)):
        if task.get(name) != server.get(name):
            return name
    return None


# --- the task process's half ---------------------------------------------------------------


def _interpreter() -> list[str]:
    """What makes two interpreters the same: the program behind the links, the environment."""
    return [os.path.realpath(sys.executable), sys.prefix]


def _send_message(sock: socket.socket, payload: dict, fds: list[int]) -> None:
    data = json.dumps(payload).encode("utf-8")
    message = _LENGTH.pack(len(data)) + data
    sent = socket.send_fds(sock, [message[:4096]], fds)
    if sent < len(message):  # (no empty send: the server may have answered and closed)
        sock.sendall(message[sent:])


def starting_path(path: str) -> str:
    """The file that holds the process id of the server about to listen at `path`; it goes
    once the server listens, or fails to start."""
    return path + ".starting"


def _running(pid: int) -> bool:
    """Whether process `pid` runs: it exists, is ours, and (where /proc tells) is no zombie
    (a server that died is one until the run reaps it at its end)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or someone else's: not our server
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][:1] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def wait_while_starting(path: str, seconds: float = STARTING_SECONDS) -> None:
    """Returns once the server at `path` listens, or is not starting (no `starting_path`, its
    process gone), or after `seconds`."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        try:
            with open(starting_path(path)) as starting:
                pid = int(starting.read())
        except (OSError, ValueError):
            return
        if not _running(pid):
            return
        time.sleep(0.05)


def _read_line(stream) -> dict:
    line = stream.readline()
    if not line:
        raise ConnectionError("the task server closed the connection")
    return json.loads(line)


def run_in_server(path: str, argv: list[str]) -> int:
    """Runs this task (`pipelines.task_main`'s `argv`) in a child of the server at `path` and
    returns its exit status; a child killed by a signal kills this process by the same signal.

    Raises:
        Refused: the server is not there, or cannot run this task (the reason); nothing ran.
        ConnectionError: the server went away after it started the task.
    """
    wait_while_starting(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_SECONDS)
    try:
        sock.connect(path)
    except OSError as error:
        sock.close()
        raise Refused(f"no task server at {path}: {error}") from None
    with sock:
        request = {
            "argv": argv,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "path": sys.path,
            "executable": sys.executable,
            "interpreter": _interpreter(),
        }
        sys.stdout.flush()
        sys.stderr.flush()
        sock.settimeout(ANSWER_SECONDS)
        try:
            _send_message(sock, request, [0, 1, 2])
            stream = sock.makefile("r", encoding="utf-8")
            answer = _read_line(stream)
        except (OSError, ValueError) as error:
            raise Refused(f"the task server did not answer: {error}") from None
        if "refused" in answer:
            raise Refused(answer["refused"])
        child = answer["pid"]
        print(
            f"warm start: this task runs in process {child}, forked from the task server",
            file=sys.stderr,
            flush=True,
        )
        sock.settimeout(None)  # as long as the task runs; its end or the server's closes it

        def forward(signum, _frame):  # a stop asked of this process reaches the task
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, forward)
        # A terminal's ^C reaches the whole run's process group, the child included: this
        # process waits for the child to take it and end.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            status = os.waitstatus_to_exitcode(_read_line(stream)["status"])
        except (OSError, ValueError):  # the server has gone: so does the task
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
            raise ConnectionError(f"the task server went away while task {child} ran") from None
    if status < 0:  # killed by a signal: so is this process, as a fresh task would have been
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
        time.sleep(1)
        return 128 - status
    return status


# --- the server ----------------------------------------------------------------------------


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    conn.settimeout(ANSWER_SECONDS)
    data, fds, _flags, _address = socket.recv_fds(conn, 65536, 3)
    try:
        if len(data) < _LENGTH.size:
            raise ValueError("a request shorter than its length")
        (length,) = _LENGTH.unpack(data[: _LENGTH.size])
        body = bytearray(data[_LENGTH.size :])
        while len(body) < length:
            chunk = conn.recv(min(1 << 20, length - len(body)))
            if not chunk:
                raise ValueError("a request cut short")
            body += chunk
        return json.loads(body.decode("utf-8")), fds
    except BaseException:  # the streams it carried stay with nobody: close them
        for fd in fds:
            os.close(fd)
        raise


def _answer(conn: socket.socket, payload: dict) -> None:
    with contextlib.suppress(OSError):
        conn.sendall((json.dumps(payload) + "\n").encode("utf-8"))


def _reason_to_refuse(request: dict, environ: Mapping[str, str]) -> str | None:
    """Why the server, started in `environ`, cannot run `request` (None: it can)."""
    if request.get("interpreter") != _interpreter():
        return f"the task's interpreter {request.get('executable')} is not {sys.executable}"
    name = differing_variable(request.get("env", {}), environ)
    if name is not None:
        return f"the task's {name} differs from the task server's (read at import)"
    return None


def _become_task(request: dict, fds: list[int], keep_closed: list) -> None:
    """In the forked child: takes over the task process's streams, directory, environment
    and path, runs the task (`pipelines.task_main`) and exits; never returns."""
    from pipelines import task_main

    status = 1
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for item in keep_closed:
            with contextlib.suppress(OSError):
                item.close() if hasattr(item, "close") else os.close(item)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = request["path"]
        sys.executable = request["executable"]
        unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
        sys.stdout.reconfigure(line_buffering=os.isatty(1), write_through=unbuffered)
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()  # from the system, as a fresh process's generator is
        status = task_main.main(request["argv"])
    finally:
        task_main.finish(status)


class _Server:
    def __init__(self, path: str, environ: Mapping[str, str]):
        self.path = path
        self.environ = dict(environ)  # as the server started, before its imports
        # What the imports set (TensorFlow sets TF_CPP_MIN_LOG_LEVEL, TF2_BEHAVIOR, ...): a
        # fresh task process sets the same while it imports, so each child gets them too.
        self.set_by_imports = {k: v for k, v in os.environ.items() if environ.get(k) != v}
        self.parent = os.getppid()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        self.children: dict[int, socket.socket] = {}  # pid -> its task process's connection
        self.stopping = False

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop through the pipe
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the tasks' to take
        signal.set_wakeup_fd(self.wake_write)
        # Bound under another name and renamed once listening: a task process that finds the
        # path can connect (a connect between bind and listen would be refused).
        self.listener.bind(self.path + ".new")
        self.listener.listen(16)
        os.replace(self.path + ".new", self.path)
        with contextlib.suppress(OSError):
            os.unlink(starting_path(self.path))
        try:
            while not self.stopping and os.getppid() == self.parent:
                watched = [self.listener, self.wake_read, *self.children.values()]
                ready, _, _ = select.select(watched, [], [], PARENT_CHECK_SECONDS)
                if self.wake_read in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_read, 4096)
                self._reap()
                for conn in ready:
                    if conn is self.listener:
                        self._accept()
                    elif conn in self.children.values():
                        self._check_task_process(conn)
        finally:
            for pid in list(self.children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._reap(block=True)
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def _stop(self, *_) -> None:
        self.stopping = True

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        fds: list[int] = []
        try:
            request, fds = _read_request(conn)
            reason = _reason_to_refuse(request, self.environ)
            if reason is None and len(fds) != 3:
                reason = f"the request carried {len(fds)} streams, not 3"
        except (OSError, ValueError) as error:
            reason = f"an unreadable request: {error}"
        if reason is not None:
            print(f"refused a task: {reason}", file=sys.stderr, flush=True)
            _answer(conn, {"refused": reason})
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                keep_closed = [self.listener, conn, self.wake_read, self.wake_write]
                request["env"].update(self.set_by_imports)
                _become_task(request, fds, keep_closed + list(self.children.values()))
            finally:
                os._exit(1)
        for fd in fds:
            os.close(fd)
        conn.settimeout(None)
        self.children[pid] = conn
        _answer(conn, {"pid": pid})

    def _check_task_process(self, conn: socket.socket) -> None:
        """A readable connection: its task process has gone (the protocol sends nothing
        more), so its child goes too."""
        with contextlib.suppress(OSError):
            if conn.recv(1, socket.MSG_PEEK):
                return
        for pid, held in list(self.children.items()):
            if held is conn:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                del self.children[pid]
                conn.close()

    def _reap(self, block: bool = False) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                _answer(conn, {"status": status})
                conn.close()


def serve(path: str, preload: tuple[str, ...] = PRELOAD) -> None:
    """Imports the modules `preload`, then serves the task processes that connect to `path`
    until SIGTERM or until the process that started it has gone."""
    import importlib

    environ = dict(os.environ)  # before the imports, which may set some (TensorFlow's logging)
    try:
        for name in preload:
            importlib.import_module(name)
    except BaseException:  # the tasks waiting for this server import afresh at once
        with contextlib.suppress(OSError):
            os.unlink(starting_path(path))
        raise
    _Server(path, environ).serve()


def start(path: str, output, environ: Mapping[str, str], preload: tuple[str, ...] = ()):
    """Starts a server process at `path` (`preload`: its modules, else `PRELOAD`), its output
    to the file `output`, and names it in `starting_path` for the tasks that come before it
    listens; returns the `subprocess.Popen`."""
    server = subprocess.Popen(
        [sys.executable, "-m", "pipelines.task_server", path, *preload],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=dict(environ),
    )
    with open(starting_path(path) + ".new", "w") as starting:
        starting.write(str(server.pid))
    os.replace(starting_path(path) + ".new", starting_path(path))
    return server


@contextlib.contextmanager
def serving(log_path) -> Iterator[str | None]:
    """Starts a task server for the block, its output in `log_path`; yields its socket's path
    (for `SERVER_VARIABLE` in the tasks' environment), or None when warm tasks are off
    (`WARM_VARIABLE`) or Unix sockets are missing. Ends the server, bounded, on the way out."""
    if (
        not warm_tasks_wanted(os.environ)
        or not hasattr(socket, "AF_UNIX")
        or not hasattr(os, "fork")
    ):
        yield None
        return
    folder = tempfile.mkdtemp(prefix="contrastive-tasks-")  # short: a socket path is < 108
    path = os.path.join(folder, "server.sock")
    with open(log_path, "ab") as log:
        server = start(path, log, os.environ)
    try:
        yield path
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        for name in (path, starting_path(path)):
            with contextlib.suppress(OSError):
                os.unlink(name)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python -m pipelines.task_server SOCKET_PATH [MODULE ...]", file=sys.stderr)
        sys.exit(2)
    serve(sys.argv[1], tuple(sys.argv[2:]) or PRELOAD)
