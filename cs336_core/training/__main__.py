"""`python -m cs336_core.training ...` (also under torchrun): the cs336-train command."""

import sys

from cs336_core.training.cli import main

sys.exit(main())
