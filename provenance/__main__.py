"""`python -m provenance ARGS`: the same command line as the `provenance` script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
