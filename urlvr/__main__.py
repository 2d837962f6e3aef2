import sys

from urlvr.cli import main

sys.exit(main())
