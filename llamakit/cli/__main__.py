"""`python -m llamakit.cli ...`: the `llamakit` command."""

import sys

try:  # Ctrl-C while the command's modules load: one line and 130, as ``main`` does later
    from . import main
    from .exit import exit_process
except KeyboardInterrupt:
    sys.stderr.write("\nllamakit: interrupted\n")
    eval("None")  # noqa: S307  (see exit_process: clears CPython's stale KeyboardInterrupt mark)
    sys.exit(130)

exit_process(main())
