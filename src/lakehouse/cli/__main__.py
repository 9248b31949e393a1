"""``python -m lakehouse.cli``."""

import sys

from lakehouse.cli import app

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
