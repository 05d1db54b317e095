"""`python -m llamakit.cli ...`: the `llamakit` command."""

import sys

from . import main

sys.exit(main())
