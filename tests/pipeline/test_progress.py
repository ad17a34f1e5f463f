"""The view of a local run (pipelines.local.view, .logs): plain lines for a scripted run, the live
view's content, the progress poller, log tails without TensorFlow's notices."""

import io
import json

from rich.console import Console

from pipelines.local.logs import is_notice, log_tail
from pipelines.local.view import (
    LiveRenderer,
    PlainRenderer,
    ProgressPoller,
    RunView,
    clock,
)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _epoch(epoch, epochs, seconds, **logs):
    return {"epoch": epoch, "epochs": epochs, "seconds": seconds, "logs": logs}


def test_clock():
    assert [clock(s) for s in (0, 4.4, 59.6, 75, 3600, 3725)] == [
        "0:00",
        "0:04",
        "1:00",
        "1:15",
        "1:00:00",
        "1:02:05",
    ]


def test_plain_lines_of_a_scripted_run():
    now = FakeClock()
    lines = []
    view = RunView(
        ["ingest", "train-baseline", "evaluate-baseline", "compare-and-report"],
        PlainRenderer(lines.append),
        clock=now,
    )
    view.cached("ingest")
    view.start("train-baseline")
    now.now += 12
    view.epoch("train-baseline", _epoch(1, 3, 10.0, loss=0.61234, val_accuracy=0.8125))
    now.now += 8
    view.epoch("train-baseline", _epoch(2, 3, 6.0, loss=0.4, val_accuracy=0.85, val_loss=0.5))
    now.now += 7
    view.epoch("train-baseline", _epoch(3, 3, 7.0, loss=0.35, val_loss=0.45))
    now.now += 1
    view.finish("train-baseline", ok=True)
    view.start("evaluate-baseline")
    now.now += 65
    view.finish("evaluate-baseline", ok=False)
    assert lines == [
        "   0:00 ingest             cached",
        "   0:00 train-baseline     running",
        "   0:12 train-baseline     epoch 1/3  loss 0.6123  val_accuracy 0.812  ETA 0:20",
        "   0:20 train-baseline     epoch 2/3  loss 0.4  val_accuracy 0.850  ETA 0:08",
        "   0:28 train-baseline     done in 0:28  epoch 3/3  loss 0.35  val_loss 0.450",
        "   0:28 evaluate-baseline  running",
        "   1:33 evaluate-baseline  failed in 1:05",
    ]
    assert view.failed() == "evaluate-baseline"
    assert view.running() is None
    assert view.states() == (
        "ingest cached, train-baseline done, evaluate-baseline failed, compare-and-report waiting"
    )


def test_a_resumed_training_counts_from_its_checkpoint():
    now = FakeClock()
    view = RunView(["pretrain-supcon"], clock=now)
    view.start("pretrain-supcon")
    now.now += 30
    view.epoch("pretrain-supcon", _epoch(3, 4, 30.0, loss=4.5, val_knn_accuracy=0.9))
    (_, rows) = view.snapshot()
    assert rows == [
        (
            "pretrain-supcon",
            "running",
            "running 0:30  epoch 3/4  loss 4.5  val_knn_accuracy 0.900  ETA 0:30",
        )
    ]


def test_live_view_shows_every_task_and_the_elapsed_time():
    now = FakeClock()
    console = Console(file=io.StringIO(), width=100, force_terminal=True, record=True)
    renderer = LiveRenderer("contrastive run X", console)
    view = RunView(["ingest", "pretrain-supcon", "compare-and-report"], renderer, clock=now)
    renderer.attach(view)
    view.cached("ingest")
    view.start("pretrain-supcon")
    now.now += 75
    view.epoch("pretrain-supcon", _epoch(1, 4, 70.0, loss=5.0, val_knn_accuracy=0.75))
    console.print(renderer)
    text = console.export_text()
    assert [line.rstrip() for line in text.splitlines()] == [
        "contrastive run X  elapsed 1:15",
        "≡ ingest             cached",
        "▶ pretrain-supcon    running 1:15  epoch 1/4  loss 5  val_knn_accuracy 0.750  ETA 3:30",
        "· compare-and-report waiting",
    ]


def test_poller_reads_whole_lines_once(tmp_path):
    now = FakeClock()
    lines = []
    view = RunView(["pretrain-supcon"], PlainRenderer(lines.append), clock=now)
    view.start("pretrain-supcon")
    lines.clear()
    poller = ProgressPoller(tmp_path, view)
    poller.drain("pretrain-supcon")  # no file yet: nothing, no error
    path = tmp_path / "pretrain-supcon.jsonl"
    first = json.dumps(_epoch(1, 3, 1.0, loss=2.0))
    second = json.dumps(_epoch(2, 3, 1.0, loss=1.0))
    path.write_text(first + "\n" + second[:10])  # the second line is being written
    poller.drain("pretrain-supcon")
    poller.drain("pretrain-supcon")
    assert [line.split()[2] for line in lines] == ["epoch"]
    path.write_text(first + "\n" + second + "\n")
    poller.drain("pretrain-supcon")
    assert [line.split(maxsplit=2)[2] for line in lines] == [
        "epoch 1/3  loss 2  ETA 0:02",
        "epoch 2/3  loss 1  ETA 0:01",
    ]


def test_poller_thread_stops_at_once(tmp_path):
    import threading
    import time

    view = RunView(["a"])
    view.start("a")
    before = set(threading.enumerate())
    with ProgressPoller(tmp_path, view, interval=0.05):
        (thread,) = [t for t in threading.enumerate() if t not in before]
        assert thread.name == "progress-poller" and thread.is_alive()
        time.sleep(0.2)
    assert not thread.is_alive()  # stopped and joined, not left behind by the join's timeout


def test_notices_of_tensorflow_are_recognised():
    notices = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795994672.867316   18957 port.cc:153] oneDNN custom operations are on.",
        "    E0000 00:00:1795994676.162746   18957 util.cc:131] oneDNN supports DT_INT64 only",
        "W0000 00:00:1795994676.162746   18957 cpu_feature_guard.cc:41] anything",
        "This TensorFlow binary is optimized to use available CPU instructions in performance",
    ]
    kept = [
        "E0000 00:00:1795994676.162746   18957 op_kernel.cc:1830] OP_REQUIRES failed at x",
        "ValueError: batch_size must be >= 2. Received: batch_size=1",
        "2026-11-29 23:30:56,011 INFO contrastive.tasks: pretrain supcon: loss=4.5",
    ]
    assert [is_notice(line) for line in notices] == [True] * len(notices)
    assert [is_notice(line) for line in kept] == [False] * len(kept)


def test_log_tail_drops_notices_and_kfp_framing(tmp_path):
    log = tmp_path / "task.log"
    body = [f"    line {i}" for i in range(40)]
    log.write_text(
        "\n".join(
            [
                "23:24:39.912 - INFO - Executing task 'pretrain-encoder'",
                *body[:20],
                "    I0000 00:00:1795994672.867316   18957 port.cc:153] oneDNN custom operations",
                *body[20:],
                "",
                "23:24:46.916 - ERROR - Task 'pretrain-encoder' finished with status FAILURE",
                "-" * 80,
            ]
        )
        + "\n"
    )
    assert log_tail(log, 30) == [f"line {i}" for i in range(10, 40)]
    assert log_tail(tmp_path / "missing.log") == []
