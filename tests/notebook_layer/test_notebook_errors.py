"""In a notebook kernel, a cell failing with a llamakit error shows one line, not a traceback."""

from __future__ import annotations

from typing import Any

import pytest

import llamakit as lk


@pytest.fixture
def shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    yield shell
    shell.set_custom_exc((), None)
    InteractiveShell.clear_instance()


def test_a_llamakit_error_in_a_cell_is_one_line(
    shell: Any, capfd: Any, scripted_server: Any
) -> None:
    server = scripted_server
    shell.user_ns["server"] = server
    shell.run_cell(
        "import llamakit as lk\nclient = lk.connect(api_key=server.api_key, base_url=server.url + '/v1')"
    )
    capfd.readouterr()
    result = shell.run_cell("client.chat('hi', temperature=9)")
    err = capfd.readouterr().err.strip()
    assert not result.success  # the cell still fails: Run All and nbval stop there
    assert isinstance(result.error_in_exec, lk.ValidationError)
    assert err.startswith("ValidationError: temperature=9 is out of range")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    # Other exceptions keep their traceback: they are bugs, not input to fix.
    shell.run_cell("1 / 0")
    assert "ZeroDivisionError" in capfd.readouterr().out + capfd.readouterr().err


def test_outside_ipython_nothing_is_installed() -> None:
    from llamakit.server.notebook_errors import show_errors_in_one_line

    assert show_errors_in_one_line() is False
