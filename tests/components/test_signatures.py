"""Each component's signature matches what its library step accepts: every input reaches the
step, by name, and the step's signature takes the call the component makes (no
`dict(locals())`, no `**kwargs` that would swallow a misspelt or forgotten input)."""

import ast
import inspect
import textwrap

import pytest

import components
from contrastive import data, methods, tasks

# The library function a step forwards its `**options` to: the call is checked against it too.
FORWARDED = {tasks.run_ingest: data.ingest}
TRAINING = {
    "pretrain_encoder": ("pretrain", "encoder_model"),
    "train_classifier": ("classifier", "model"),
    "train_baseline": ("baseline", "model"),
}


def _functions():
    written = (
        components.branches.for_methods(t, methods.names()) for t in components.BRANCH_TEMPLATES
    )
    return [*components.FUNCTIONS, *written]


def _tree(function) -> ast.FunctionDef:
    return ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]


def _library_calls(tree):
    """(function of `contrastive.tasks`, call node) for every `tasks.<name>(...)` call."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "tasks"
        ):
            yield getattr(tasks, node.func.attr), node


def _binds(function, call: ast.Call) -> None:
    """Raises TypeError unless `function` takes the call's arguments (placeholders)."""
    signature = inspect.signature(function)
    keywords = {keyword.arg: None for keyword in call.keywords}
    bound = signature.bind(*[None] * len(call.args), **keywords)
    extra = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)
    if extra is not None:
        assert function in FORWARDED, f"{function.__name__} takes **{extra}: check it here"
        target = inspect.signature(FORWARDED[function])
        target.bind(None, None, **bound.arguments.get(extra, {}))


@pytest.mark.parametrize("function", _functions(), ids=lambda function: function.__name__)
def test_every_input_reaches_a_step_that_accepts_the_call(function):
    tree = _tree(function)
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    unused = [name for name in inspect.signature(function).parameters if name not in read]
    assert not unused, f"{function.__name__} ignores its inputs {unused}"
    calls = list(_library_calls(tree))
    assert calls, f"{function.__name__} calls no contrastive.tasks step"
    for library_function, call in calls:
        _binds(library_function, call)


@pytest.mark.parametrize("name", sorted(TRAINING))
def test_a_training_component_passes_each_input_under_its_own_name(name):
    step, output = TRAINING[name]
    function = getattr(components, name)
    ((library_function, call),) = list(_library_calls(_tree(function)))
    assert library_function is tasks.run_training_component
    assert [ast.literal_eval(argument) for argument in call.args[:1]] == [step]
    passed = {
        keyword.arg: keyword.value.id
        for keyword in call.keywords
        if isinstance(keyword.value, ast.Name)
    }
    assert len(passed) == len(call.keywords)  # every keyword is an input, as it is
    expected = {name: name for name in inspect.signature(function).parameters}
    expected["output"] = expected.pop(output)
    assert passed == expected
    accepted = inspect.signature(tasks.run_training_component).parameters
    assert set(passed) <= set(accepted)
    assert not any(p.kind is p.VAR_KEYWORD for p in accepted.values())


def test_the_check_catches_a_misspelt_keyword():
    def broken(dataset: str, split: str = "test"):
        from contrastive import tasks

        tasks.run_evaluate(dataset, "model", splitt=split)

    ((library_function, call),) = list(_library_calls(_tree(broken)))
    with pytest.raises(TypeError, match="splitt"):
        _binds(library_function, call)
