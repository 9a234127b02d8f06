"""`python -m pipelines.cli ...`: the same as `sagepipe ...`."""

import sys

from pipelines.cli import main

sys.exit(main())
