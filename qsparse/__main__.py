"""``python -m qsparse``: the qsparse command line (qsparse.cli)."""
import sys

from .cli import main

sys.exit(main())
