"""`python -m cs336_core.bpe train|encode ...`: the `cs336-bpe` command."""

import sys

from cs336_core.bpe.cli import main

sys.exit(main())
