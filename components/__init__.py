"""KFP components: thin glue over `contrastive.tasks`, one file per component.

Each file defines a plain function whose name matches the file; `build(image, methods)` turns
them into KFP components bound to a container image, so the image is a compile-time argument
and never read from the environment at import. `parameters.py` describes every input once; its
`document` gives each function (and the pipeline) a Google-style `Args:` section. The
components that take every method branch's outputs are templates written for the methods
compiled in (`branches.py`).
"""

from collections.abc import Sequence
from types import SimpleNamespace

from components.branches import for_methods
from components.check_drift import check_drift
from components.collect_fraction import collect_fraction
from components.compare_and_report import compare_and_report
from components.evaluate_classifier import evaluate_classifier
from components.explain_neighbours import explain_neighbours
from components.ingest_data import ingest_data
from components.parameters import document
from components.pretrain_encoder import pretrain_encoder
from components.train_baseline import train_baseline
from components.train_classifier import train_classifier

FUNCTIONS = (
    ingest_data,
    check_drift,
    train_baseline,
    pretrain_encoder,
    train_classifier,
    evaluate_classifier,
)
# Their inputs hold one per method branch: `branches.for_methods` writes them for the run.
BRANCH_TEMPLATES = (collect_fraction, explain_neighbours, compare_and_report)
# The steps that train: a target may run them elsewhere (scale-out, `pipelines.targets`).
TRAINING = ("pretrain_encoder", "train_classifier", "train_baseline")
# The image a package compiled without --image names; no registry serves it, so submit
# refuses it (`pipelines.package`).
DEFAULT_IMAGE = "contrastive:dev"

for _function in FUNCTIONS:  # an Args: line per input, shown in the compiled YAML and the UIs
    document(_function)


def build(image: str = DEFAULT_IMAGE, methods: Sequence[str] | None = None) -> SimpleNamespace:
    """Every component as a `kfp.dsl` component running in `image` (kfp is in the image),
    those of `BRANCH_TEMPLATES` with one input per method of `methods` (default: every
    registered method, `contrastive.methods`)."""
    from kfp import dsl

    from contrastive import methods as method_registry

    if not image or any(c.isspace() for c in image):
        raise ValueError(f"image must be a container image reference. Received: image={image!r}")
    methods = (
        method_registry.names() if methods is None else method_registry.check_branches(methods)
    )
    functions = [*FUNCTIONS, *(for_methods(template, methods) for template in BRANCH_TEMPLATES)]
    return SimpleNamespace(
        **{
            function.__name__: dsl.component(function, base_image=image, install_kfp_package=False)
            for function in functions
        }
    )
