"""The entry point of a `contrastive run` task process: kfp's executor, then an immediate exit.

kfp.local starts every task as `python3 -m kfp.dsl.executor_main ...`. After the executor has
written the task's outputs, a process that imported TensorFlow spends about a second more
tearing the interpreter down (freeing its modules, TensorFlow's atexit work), ~15 % of a
small task and nothing the run needs. A local run (`pipelines.local.run`) therefore starts
its tasks as `python3 -m pipelines.task_main kfp.dsl.executor_main ...`: this module runs the
module named first as `python -m` would (kfp's executor, unchanged, on the other
arguments), flushes the logs and the standard streams, and ends the process with `os._exit`
and the exit status Python would have given (0; 1 and the traceback on an exception; a
`SystemExit`'s code). Every file a step writes is closed before its function returns (the
executor's output file too), so nothing is lost. (kfp.local's subprocess runner accepts a
task only if its command names `kfp.dsl.executor_main`: it still does.)

Where the run started a warm task server (`pipelines.task_server`, named by
`CONTRASTIVE_TASK_SERVER`), the task runs in a child of that server, which has TensorFlow and
Keras imported already; this process waits for it and exits with its status (`run`). Where
the server is missing or refuses the task (the reason goes to the task's log), the task runs
here as above.

Kept out of `pipelines.local` (whose package imports the DAG): a task imports only what kfp's
executor imports.
"""

import logging
import os
import runpy
import sys


def exit_status(stop: SystemExit) -> int:
    """The status Python gives an uncaught `SystemExit`: its code if an int, 0 for None,
    else 1 after printing the code to stderr."""
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code
    print(stop.code, file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    """Runs the module `argv[1]` as `__main__` with the arguments after it (as `python -m
    argv[1] ...` would); returns the exit status."""
    if len(argv) < 2:
        print("usage: python -m pipelines.task_main MODULE [ARGUMENTS ...]", file=sys.stderr)
        return 2
    module = argv[1]
    sys.argv = [argv[0], *argv[2:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        return exit_status(stop)
    except KeyboardInterrupt:  # Python's status for an interrupted process: 128 + SIGINT
        sys.excepthook(*sys.exc_info())
        return 130
    except BaseException:  # noqa: BLE001 - printed as Python prints an uncaught exception
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def run(argv: list[str]) -> int:
    """Runs the task `argv` (as `main`) in the warm task server named by the environment, or
    here when there is none or it refuses; returns the exit status."""
    from pipelines import task_server

    path = os.environ.get(task_server.SERVER_VARIABLE)
    if path:
        try:
            return task_server.run_in_server(path, argv)
        except task_server.Refused as reason:
            print(f"warm start refused ({reason}): this task imports afresh", file=sys.stderr)
        except ConnectionError as error:
            print(f"task failed: {error}", file=sys.stderr)
            return 1
    return main(argv)


def finish(status: int) -> None:
    """Flushes the logs and the standard streams, then ends the process with `status`."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to save
            pass
    os._exit(status)


if __name__ == "__main__":
    finish(run(sys.argv))
