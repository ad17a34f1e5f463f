"""KFP components: thin glue over `contrastive.tasks`, one file per component.

Each file defines a plain function whose name matches the file; `build(image)` turns them into
KFP components bound to a container image, so the image is a compile-time argument and never
read from the environment at import. `parameters.py` describes every input once; its
`document` gives each function (and the pipeline) a Google-style `Args:` section.
"""

from types import SimpleNamespace

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
    collect_fraction,
    explain_neighbours,
    compare_and_report,
)
DEFAULT_IMAGE = "contrastive:dev"

for _function in FUNCTIONS:  # an Args: line per input, shown in the compiled YAML and the UIs
    document(_function)


def build(image: str = DEFAULT_IMAGE) -> SimpleNamespace:
    """Every component as a `kfp.dsl` component running in `image` (kfp is in the image)."""
    from kfp import dsl

    if not image or any(c.isspace() for c in image):
        raise ValueError(f"image must be a container image reference. Received: image={image!r}")
    return SimpleNamespace(
        **{
            function.__name__: dsl.component(function, base_image=image, install_kfp_package=False)
            for function in FUNCTIONS
        }
    )
