"""Run the provenance command line from a checkout: `python cli.py inspect PATH`."""

import sys

from provenance.cli import main

if __name__ == "__main__":
    sys.exit(main())
