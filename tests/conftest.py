"""Fixtures every test shares: an isolated llamakit home, and one scripted local server per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's real store or sees a real key."""
    home = tmp_path / "llamakit-home"
    monkeypatch.setenv("LLAMAKIT_HOME", str(home))
    monkeypatch.delenv("SEGMIND_API_KEY", raising=False)
    monkeypatch.delenv("SEGMIND_BASE_URL", raising=False)
    return home


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[object]:
    """A scripted local server shared by tests that only read from it (no faults, ample credits)."""
    import llamakit

    with llamakit.local_server(backend="scripted", credits=1000.0) as server:
        yield server
