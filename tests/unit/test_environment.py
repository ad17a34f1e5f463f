"""`contrastive.environment`: the hooks a compiled task names (a target's launcher and
publisher) read back as the functions they name, malformed values are refused naming the
variable, and a gate asked to publish without a publisher refuses before any work."""

import json

import pytest

from contrastive import environment


def record(*args, **kwargs):
    """A hook target: returns what it was called with."""
    return {"args": args, "kwargs": kwargs}


def test_a_hook_reads_back_as_the_function_it_names_with_its_settings():
    value = environment.hook_value("tests.unit.test_environment:record", nodes=2, image="i")
    assert json.loads(value) == {
        "call": "tests.unit.test_environment:record",
        "settings": {"image": "i", "nodes": 2},
    }
    hook = environment.launcher({environment.LAUNCHER_VARIABLE: value})
    assert hook.load().__qualname__ == "record"  # (pytest loads this file under another name)
    assert hook("call", environ={}) == {
        "args": ("call",),
        "kwargs": {"image": "i", "nodes": 2, "environ": {}},
    }
    assert environment.publisher({environment.LAUNCHER_VARIABLE: value}) is None
    assert environment.launcher({}) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "CONTRASTIVE_PUBLISHER must be JSON"),
        ('{"settings": {}}', "CONTRASTIVE_PUBLISHER must be JSON"),
        ('{"call": "no.such.module:f"}', "cannot be imported"),
        ('{"call": "tests.unit.test_environment:absent"}', "cannot be imported"),
    ],
)
def test_a_malformed_hook_is_refused_naming_it(value, message):
    with pytest.raises(ValueError, match=message):
        environment.publisher({environment.PUBLISHER_VARIABLE: value}).load()


def test_a_hook_value_is_module_colon_function():
    with pytest.raises(ValueError, match="Received: call='pipelines.targets.vertex'"):
        environment.hook_value("pipelines.targets.vertex")


def test_publishing_without_a_publisher_is_refused_before_any_work(tmp_path):
    from contrastive import tasks

    with pytest.raises(ValueError) as raised:
        tasks.run_compare_and_report(
            str(tmp_path / "no-dataset"),
            {"supcon": (str(tmp_path / "e.json"), str(tmp_path / "m"))},
            report_path=tmp_path / "report.html",
            markdown_path=tmp_path / "summary.md",
            results_path=tmp_path / "results.json",
            registry=str(tmp_path / "registry"),
            publish={"model_id": "champion"},
            environ={},
        )
    assert "names no publisher (CONTRASTIVE_PUBLISHER" in str(raised.value)
    assert "Received: {'model_id': 'champion'}" in str(raised.value)
    assert list(tmp_path.iterdir()) == []
