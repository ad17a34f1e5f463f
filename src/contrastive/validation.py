"""Argument checks that every layer shares (config, library, CLI).

Each check raises `error` (ValueError by default; `ConfigError` for the config) with a message
that names the argument and ends `Received: name=value`, so a user sees at once which value
to fix. `bool` is never accepted where a number is expected (`True` is an `int` in Python).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection
from typing import Any


def is_int(value: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check(
    name: str,
    value: Any,
    predicate: Callable[[Any], bool],
    requirement: str,
    *,
    error: type[Exception] = ValueError,
) -> Any:
    """`value` if `predicate(value)` holds (a TypeError counts as failing), else
    `error("{name} {requirement}. Received: {name}={value!r}")`."""
    try:
        ok = bool(predicate(value))
    except TypeError:
        ok = False
    if not ok:
        raise error(f"{name} {requirement}. Received: {name}={value!r}")
    return value


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int = 1,
    allow_none: bool = False,
    error: type[Exception] = ValueError,
) -> Any:
    """An integer >= `minimum` (or None with `allow_none`)."""
    if allow_none and value is None:
        return value
    if not is_int(value) or value < minimum:
        requirement = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise error(f"{name} must be {requirement}. Received: {name}={value!r}")
    return value


def check_seed(value: Any, name: str = "seed") -> Any:
    """An integer random seed, or None."""
    if value is not None and not is_int(value):
        raise ValueError(f"{name} must be an int or None. Received: {name}={value!r}")
    return value


def check_positive(name: str, value: Any, *, error: type[Exception] = ValueError) -> Any:
    """A finite number > 0."""
    if not (is_number(value) and math.isfinite(value) and value > 0):
        raise error(f"{name} must be > 0. Received: {name}={value}")
    return value


def check_finite(name: str, value: Any, *, error: type[Exception] = ValueError) -> Any:
    """A finite number."""
    if not (is_number(value) and math.isfinite(value)):
        raise error(f"{name} must be a finite number. Received: {name}={value!r}")
    return value


def check_non_negative(name: str, value: Any, *, error: type[Exception] = ValueError) -> Any:
    """A finite number >= 0."""
    if not (is_number(value) and math.isfinite(value) and value >= 0):
        raise error(f"{name} must be a finite number >= 0. Received: {name}={value!r}")
    return value


def check_choice(
    name: str, value: Any, choices: Collection, *, error: type[Exception] = ValueError
) -> Any:
    """One of `choices`."""
    if value not in choices:
        raise error(f"{name} must be one of {list(choices)}. Received: {name}={value!r}")
    return value
