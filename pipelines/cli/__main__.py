"""`python -m pipelines.cli` is `contrastive`."""

import sys

from pipelines.cli import main

sys.exit(main())
