"""`python -m llamakit.cli ...`: the `llamakit` command."""

import sys

try:  # Ctrl-C while the command's modules load: one line and 130, as ``main`` does later
    from . import main
except KeyboardInterrupt:
    sys.stderr.write("\nllamakit: interrupted\n")
    sys.exit(130)

sys.exit(main())
