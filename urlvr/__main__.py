"""``python -m urlvr``: the command line (see :mod:`urlvr.cli`)."""

import sys

from urlvr.cli import main

if __name__ == "__main__":
    sys.exit(main())
