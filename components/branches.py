"""Components that take every method branch's outputs, written for the methods compiled in.

KFP reads a lightweight component's inputs from its function's signature and ships the
function's source in the compiled pipeline, where the task runs it; a Python list of task
outputs is no KFP input (only a `dsl.ParallelFor`'s `dsl.Collected`). So a component that
takes one input per method (`compare_and_report`, `collect_fraction`) is a function written
at compile time for the run's methods, from a template:

* the template is an ordinary function whose parameter `branches` stands for the methods'
  inputs, `{method: {suffix: artifact}}`, and its module's `BRANCH_INPUTS` says which:
  `{suffix: (annotation, what it is)}`;
* `for_methods(template, methods)` writes the template with `branches` replaced by one
  required input `<method>_<suffix>` per method and suffix, and `branches` rebuilt from
  them as the body's first statement.

The written source is kept in `linecache`, so `inspect.getsource` (what KFP ships),
tracebacks and `python_func` work as for a function in a file. Calling the template itself
with `branches=` runs the same body (tests).
"""

import ast
import inspect
import linecache
import sys
import textwrap
from collections.abc import Sequence

from components.parameters import document
from contrastive import methods as method_registry

PLACEHOLDER = "branches"


def input_name(method: str, suffix: str) -> str:
    """The input of `method`'s branch for `suffix` (`supcon_evaluation`): the components'
    and the DAG's one spelling."""
    return f"{method}_{suffix}"


def for_methods(template, methods: Sequence[str]):
    """`template` (see the module's docstring) with one input per method of `methods`, in
    their order, documented like every component."""
    inputs = sys.modules[template.__module__].BRANCH_INPUTS
    lines = textwrap.dedent(inspect.getsource(template)).splitlines()
    function = ast.parse("\n".join(lines)).body[0]
    names = [argument.arg for argument in function.args.args]
    if PLACEHOLDER not in names or len(names) - names.index(PLACEHOLDER) <= len(
        function.args.defaults
    ):
        raise ValueError(
            f"{template.__name__} needs a parameter {PLACEHOLDER!r} without a default, "
            "which the methods' inputs replace"
        )
    # Edit the text where the AST says (one parameter per line, as ruff formats a long
    # signature), so the shipped source reads like the template, comments included.
    placeholder = function.args.args[names.index(PLACEHOLDER)]
    line = lines[placeholder.lineno - 1]
    indent = line[: placeholder.col_offset]
    rest = line[placeholder.end_col_offset :]
    parameters = [
        f"{indent}{input_name(method, suffix)}: {annotation}{rest}"
        for method in methods
        for suffix, (annotation, _) in inputs.items()
    ]
    first = function.body[0]
    after = first.end_lineno if ast.get_docstring(function) is not None else first.lineno - 1
    body_indent = " " * function.body[-1].col_offset
    lines[after:after] = [
        f"{body_indent}{PLACEHOLDER} = {{",
        *(
            f'{body_indent}    "{method}": {{'
            + ", ".join(f'"{suffix}": {input_name(method, suffix)}' for suffix in inputs)
            + "},"
            for method in methods
        ),
        f"{body_indent}}}",
    ]
    lines[placeholder.lineno - 1 : placeholder.lineno] = parameters
    start = next(i for i, text in enumerate(lines) if text.startswith("def "))
    source = "\n".join(lines[start:]) + "\n"  # decorators dropped

    filename = f"<{template.__module__}.{template.__name__} for {','.join(methods)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = dict(template.__globals__)  # the template module's imports (Input, Model, ...)
    exec(compile(source, filename, "exec"), namespace)
    written = namespace[template.__name__]
    written.__doc__ = template.__doc__
    return document(written, descriptions(template, methods))


def descriptions(template, methods: Sequence[str]) -> dict[str, str]:
    """The `Args:` line of each input `for_methods` writes: "The SupCon branch's ..."."""
    inputs = sys.modules[template.__module__].BRANCH_INPUTS
    return {
        input_name(method, suffix): f"The {method_registry.get(method).label} branch's {what}."
        for method in methods
        for suffix, (_, what) in inputs.items()
    }
