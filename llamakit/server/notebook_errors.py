"""In a notebook, a llamakit error is one line, not a traceback.

A ``LlamakitError`` is raised on purpose and its message already names what is wrong and how to fix
it (a bad template variable, a budget, a 401); the forty lines of traceback above it are llamakit's
internals and hide that line. IPython's custom exception hook shows only the message; ``%tb`` still
prints the whole traceback. The cell still fails, so "Run All" and nbval stop there as before.
"""

from __future__ import annotations

import sys
from typing import Any


def show_errors_in_one_line() -> bool:
    """Install the hook in the running IPython kernel, if any; True if installed. Idempotent."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    from ..errors import LlamakitError

    shell.set_custom_exc((LlamakitError,), _one_line)
    return True


def _one_line(
    shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None
) -> None:
    message = " ".join(str(value).split())
    print(f"{etype.__name__}: {message}  (%tb shows the full traceback)", file=sys.stderr)
