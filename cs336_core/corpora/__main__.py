"""`python -m cs336_core.corpora ...`: the command line of `cli.py`."""

from cs336_core.corpora.cli import main

if __name__ == "__main__":
    main()
