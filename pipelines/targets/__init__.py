"""Where a compiled pipeline runs: one module per target, one entry each in `TARGETS`.

A target (`base.Target`) owns what differs between places: the accelerator names and machine
types, what each task asks for, scale-out, the run-id and checkpoint-key placeholders, and,
for a cluster, how to connect, submit and schedule. The DAG, the CLI and `submit`/`schedule`
ask the target found here by name. A new target is a module with a `Target` subclass and its
entry below.
"""

from __future__ import annotations

from pipelines.targets.base import Connection, SubmitError, Target, fields_of
from pipelines.targets.kubeflow import KubeflowTarget
from pipelines.targets.local import LocalTarget
from pipelines.targets.vertex import VertexTarget

TARGETS: dict[str, type[Target]] = {
    target.name: target for target in (LocalTarget, KubeflowTarget, VertexTarget)
}


def register(target: type[Target]) -> type[Target]:
    """Adds `target` under its name (a target from elsewhere, e.g. the test suite's toy);
    `ValueError` if the name is taken."""
    if not target.name or target.name in TARGETS:
        raise ValueError(f"a target needs a new name. Received: name={target.name!r}")
    TARGETS[target.name] = target
    return target


def unregister(name: str) -> None:
    """Removes the target named `name` (one `register` added)."""
    TARGETS.pop(name, None)


def get(name: str) -> type[Target]:
    """The target named `name`; `ValueError` naming the choices."""
    if name not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}. Received: target={name!r}")
    return TARGETS[name]


def clusters() -> dict[str, type[Target]]:
    """The targets a package is compiled for and submitted to (those with a `Connection`)."""
    return {name: target for name, target in TARGETS.items() if target.Connection is not None}


def get_cluster(name: str, error: type[Exception] = SubmitError) -> type[Target]:
    """The cluster target named `name`; `error` naming the choices."""
    if name not in clusters():
        raise error(f"target must be one of {', '.join(clusters())}. Received: target={name!r}")
    return TARGETS[name]


def compile_target(name: str, options, **settings) -> Target:
    """The target `name` for one compile: `settings` are its own (`Target.Settings`; None
    keeps a default); one of another target left at its default is ignored, one given is
    refused naming whose it is."""
    target = get(name)
    settings = {field: value for field, value in settings.items() if value is not None}
    own = {field: value for field, value in settings.items() if field in _setting_names(target)}
    for field, value in settings.items():
        if field in own:
            continue
        owner = next((t for t in TARGETS.values() if field in _setting_names(t)), None)
        if owner is None:
            raise TypeError(f"build_pipeline() got an unexpected keyword argument {field!r}")
        if value != fields_of(owner.Settings()).get(field):
            raise ValueError(
                f"{owner.settings_title}, for target {owner.name} only. Received: target={name!r}"
            )
    return target(options, target.Settings(**own))


def connection(target: str, **settings) -> Connection:
    """The `Connection` of the cluster target `target` from `settings` (its fields; one of
    another target's that is not None is refused naming whose it is, and so is an unknown
    one)."""
    cls = get_cluster(target)
    names = _connection_names(cls)
    for field, value in settings.items():
        if field in names or value is None:
            continue
        owners = [t.name for t in clusters().values() if field in _connection_names(t)]
        flag = "--" + field.replace("_", "-")
        if not owners:
            raise SubmitError(f"{flag} is no setting of any target. Received: {field}={value!r}")
        raise SubmitError(
            f"{flag} is for target {' or '.join(owners)}. Received: target={target!r}, "
            f"{field}={value!r}"
        )
    return cls.Connection(**{key: value for key, value in settings.items() if key in names})


def _setting_names(target: type[Target]) -> set[str]:
    return set(fields_of(target.Settings()))


def _connection_names(target: type[Target]) -> set[str]:
    import dataclasses

    return {field.name for field in dataclasses.fields(target.Connection)}


__all__ = [
    "TARGETS",
    "Connection",
    "SubmitError",
    "Target",
    "clusters",
    "compile_target",
    "connection",
    "get",
    "get_cluster",
    "register",
    "unregister",
]
