"""``python -m bertfit`` (and ``torchrun -m bertfit``) run the command line."""

import sys

from bertfit.cli import main

sys.exit(main())
