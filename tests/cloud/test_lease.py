"""`contrastive.lease`: one writer per output folder, on a local folder and on a GCS-protocol
server (gcp-storage-emulator with `ifGenerationMatch` enforced by the fixture)."""

import json
import os
import subprocess
import threading
import time

import pytest

from contrastive import lease, storage


def _holder(**fields) -> bytes:
    record = {"what": "ingest", "host": "elsewhere", "pid": 4242, "started_at": "T0"}
    return json.dumps({**record, **fields}).encode()


def test_a_second_writer_fails_naming_the_live_holder(root):
    first = lease.acquire(root, "ingest")
    try:
        with pytest.raises(lease.OutputBusyError) as raised:
            lease.acquire(root, "pretrain supcon")
        message = str(raised.value)
        assert message.startswith(f"{root} is being written by ingest (pid {os.getpid()} on ")
        assert "two writers cannot share an output" in message
        first.check()  # still ours
    finally:
        first.release()
    assert not storage.exists(storage.join(root, lease.LEASE_NAME))
    lease.acquire(root, "pretrain supcon").release()  # free again


def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path):
    folder = str(tmp_path / "out")
    dead = subprocess.Popen(["true"])  # a process that has ended (not Python: no interpreter)
    dead.wait(timeout=30)
    import socket

    storage.write_bytes(
        storage.join(folder, lease.LEASE_NAME),
        _holder(host=socket.gethostname(), pid=dead.pid),
    )
    started = time.monotonic()
    held = lease.acquire(folder, "ingest", stale_seconds=600)
    assert time.monotonic() - started < 5  # no waiting for a process that is gone
    assert held.record["pid"] == os.getpid()
    held.release()


def test_another_hosts_holder_is_taken_over_only_when_it_stops_renewing(root):
    path = storage.join(root, lease.LEASE_NAME)
    storage.write_bytes(path, _holder())
    held = lease.acquire(root, "ingest", stale_seconds=0.6, poll_seconds=0.1)  # never renewed
    held.release()

    storage.write_bytes(path, _holder(renewals=0))
    stop = threading.Event()

    def renew():  # a live holder on another host
        count = 0
        while not stop.wait(0.1):
            count += 1
            storage.write_bytes(path, _holder(renewals=count))

    thread = threading.Thread(target=renew, daemon=True)
    thread.start()
    try:
        with pytest.raises(
            lease.OutputBusyError, match="is being written by ingest .pid 4242 on elsewhere"
        ):
            lease.acquire(root, "ingest", stale_seconds=2.0, poll_seconds=0.1)
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_holder_whose_lease_was_taken_over_cannot_commit(root):
    held = lease.acquire(root, "ingest", stale_seconds=0.2)
    path = storage.join(root, lease.LEASE_NAME)
    _, generation = storage.read_with_generation(path)
    storage.write_if_generation_match(path, _holder(what="ingest (the new writer)"), generation)
    deadline = time.monotonic() + 20
    while True:  # its next renewal finds the lease changed
        try:
            held.check()
        except lease.OutputBusyError as error:
            assert "taken over by ingest (the new writer) (pid 4242 on elsewhere" in str(error)
            break
        assert time.monotonic() < deadline, "the lost lease was not noticed"
        time.sleep(0.05)
    held.release()  # leaves the new writer's lease alone
    assert json.loads(storage.read_bytes(path))["what"] == "ingest (the new writer)"
