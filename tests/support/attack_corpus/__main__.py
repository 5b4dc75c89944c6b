"""`python -m tests.support.attack_corpus --out DIR [--groups ...] [--run]`."""

import sys

from . import main

sys.exit(main())
