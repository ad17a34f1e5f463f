"""`contrastive run` as a user starts it, in a child process: the one way the e2e tests run
the whole DAG (each adds its own flags)."""

import subprocess
import sys


def run_command(source, runs, *flags, profile: str = "tiny") -> list[str]:
    """The command line of `contrastive run --profile <profile> --source <source> --runs-dir
    <runs> <flags>`, through this interpreter."""
    return [
        sys.executable,
        "-m",
        "pipelines.cli",
        "run",
        "--profile",
        profile,
        "--source",
        str(source),
        "--runs-dir",
        str(runs),
        *flags,
    ]


def run_ok(source, runs, *flags, timeout: float, profile: str = "tiny", env=None):
    """Runs the command to its end (at most `timeout` seconds; `env`: its environment, by
    default this one) and asserts it succeeded, with the end of its output in the failure
    message; returns the `CompletedProcess`."""
    result = subprocess.run(
        run_command(source, runs, *flags, profile=profile),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result
