"""A package's compile-time choices, checked once: `CompileOptions`.

What every target shares: the image, the methods and labelled fractions compiled in (each
adds branches to the DAG), what a training or evaluation step asks for, and the scale-out.
A target's own settings (Kubernetes pod settings, a Vertex machine type) are its `Settings`
(`pipelines.targets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import components
from contrastive import methods as method_registry
from contrastive.validation import check_choice, check_int

BACKENDS = ("tensorflow", "jax")


@dataclass(frozen=True)
class CompileOptions:
    """Compile-time choices of every target.

    Args:
        image: container image of every step.
        methods: the branches, registry names (`contrastive.methods`), in DAG order.
        labeled_fractions: few labels, one branch per fraction and method; empty: one run.
        accelerator_type: named the target's way; None: the target's default.
        accelerator_count: accelerators per training/evaluation step (per node), >= 0.
        cpu_limit, memory_limit: of a training or evaluation step.
        retries: of a training step, >= 0.
        replicas: nodes per training step, >= 1.
        backend: the Keras backend of the steps.
    """

    image: str = components.DEFAULT_IMAGE
    methods: tuple[str, ...] = ()
    labeled_fractions: tuple[float, ...] = ()
    accelerator_type: str | None = None
    accelerator_count: int = 1
    cpu_limit: str = "8"
    memory_limit: str = "32G"
    retries: int = 3
    replicas: int = 1
    backend: str = "tensorflow"

    @classmethod
    def checked(
        cls,
        *,
        methods: Sequence[str] | None = None,
        labeled_fractions: Sequence[float] | str = (),
        **values,
    ) -> CompileOptions:
        """The options, each checked (None methods: the registry's defaults).

        Raises:
            ValueError: naming the first bad value: methods, fractions, scale-out (more than
                one device trains data-parallel, which needs the JAX backend), then the counts
                KFP would write as given (`maxRetryCount: -1`) or drop silently (a negative
                accelerator count compiles to no accelerator).
        """
        methods = method_registry.check_branches(
            method_registry.default_names() if methods is None else methods
        )
        options = cls(
            methods=tuple(methods),
            labeled_fractions=check_labeled_fractions(labeled_fractions),
            **values,
        )
        check_int("replicas", options.replicas)
        check_choice("backend", options.backend, BACKENDS)
        if options.data_parallel and options.backend != "jax":
            raise ValueError(
                f"{options.replicas} replica(s) x {options.accelerator_count} accelerator(s) "
                "train data-parallel, which runs on the JAX backend: compile with --backend jax "
                f"and the JAX image. Received: backend={options.backend!r}"
            )
        check_int("retries", options.retries, minimum=0)
        check_int("accelerator_count", options.accelerator_count, minimum=0)
        return options

    @property
    def data_parallel(self) -> bool:
        """More than one device in all: the training steps train data-parallel."""
        return self.replicas * max(self.accelerator_count, 1) > 1


def check_labeled_fractions(fractions: Sequence[float] | str) -> tuple[float, ...]:
    """Labelled fractions as the DAG compiles them: distinct, ascending, each in (0, 1];
    "0.01,0.1,1" or a sequence; empty: none (one run with every label)."""
    if isinstance(fractions, str):
        fractions = [part.strip() for part in fractions.split(",") if part.strip()]
    values = []
    for value in fractions:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not 0 < number <= 1:
            raise ValueError(
                "labeled_fractions must be fractions in (0, 1], e.g. 0.01,0.1,1. "
                f"Received: labeled_fractions={list(fractions)}"
            )
        values.append(number)
    return tuple(sorted(set(values)))
