"""``python -m nf``: see ``nf.book.cli``."""

import sys

from nf.book.cli import main

sys.exit(main())
