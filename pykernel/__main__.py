"""``python -m pykernel`` runs the ``pykernel`` command."""

import sys

from pykernel.cli import main

sys.exit(main())
