"""``python -m bner.evaluate FILE``: the conlleval command, kept where users know it (:mod:`bner.cli.conlleval`)."""

import sys

from bner.cli.conlleval import main

if __name__ == "__main__":
    sys.exit(main())
