"""``python -m fracrisk`` runs the command line."""

import sys

from fracrisk.cli import main

if __name__ == "__main__":
    sys.exit(main())
