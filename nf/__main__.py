"""``python -m nf``: see ``nf.cli``."""

import sys

from .cli import main

sys.exit(main())
