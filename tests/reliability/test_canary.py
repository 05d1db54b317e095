"""The canary (issue 6, item 4): a unique fake API key goes through everything a researcher does,
with httpx/httpcore debug logging on, and must appear nowhere afterwards.

Exercised: a chat and a saved conversation, an experiment with errors (injected 500s recorded on
cells, then a wrong key: 401), a key rejected client-side, CSV export, every plot saved as PNG and
SVG, and a generated notebook executed with nbclient (chat, error traceback, CSV, plot, debug logs).
Searched: every file under the test's directories (store, WAL, CSV, images, logs, the executed
notebook), captured stdout/stderr, every log record, every exception text and repr.
"""

from __future__ import annotations

import logging
import os
import secrets
import traceback
from pathlib import Path
from typing import Any

import pytest

import llamakit as lk
from llamakit import scoring
from llamakit.errors import APIError, LlamakitError
from llamakit.store import Store

pytestmark = pytest.mark.slow

SECRET_HEX = secrets.token_hex(16)
CANARY = f"SG_canary_{SECRET_HEX}"
WRONG = f"SG_wrongkey_{secrets.token_hex(16)}"  # a mistyped key is a secret too


def _needles(key: str) -> list[bytes]:
    """The key, and long-enough pieces of its random part (a partly masked key still leaks)."""
    tail = key.split("_")[-1]
    pieces = [key, tail, tail[:12], tail[-12:]]
    out: list[bytes] = []
    for p in pieces:
        out += [p.encode(), p.encode("utf-16-le"), p.encode().hex().encode()]
    return out


NEEDLES = _needles(CANARY) + _needles(WRONG)


def _leaks(blob: bytes) -> list[bytes]:
    return [n for n in NEEDLES if n in blob]


def _scan_tree(root: Path) -> dict[str, list[bytes]]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file():
            hits = _leaks(path.read_bytes())
            if hits:
                found[str(path)] = hits
    return found


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def debug_logging(tmp_path: Path) -> Any:
    """Root logger at DEBUG into a file and a list, httpx/httpcore/uvicorn included."""
    names = ["", "httpx", "httpcore", "llamakit", "uvicorn", "uvicorn.error", "uvicorn.access"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    file_handler = logging.FileHandler(tmp_path / "debug.log", encoding="utf-8")
    file_handler.setLevel(logging.DEBUG)
    records = _Records()
    root = logging.getLogger()
    root.addHandler(file_handler)
    root.addHandler(records)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(file_handler)
    root.removeHandler(records)
    file_handler.close()
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


def _notebook(path: Path) -> None:
    import nbformat

    cells = [
        "import logging, os\nlogging.basicConfig(level=logging.DEBUG, force=True)\n"
        "logging.getLogger('httpx').setLevel(logging.DEBUG)\n"
        "logging.getLogger('httpcore').setLevel(logging.DEBUG)\n"
        "import llamakit as lk\nfrom llamakit import plots",
        "client = lk.connect()\nclient",
        "r = client.chat('hello from a notebook', max_tokens=16)\nprint(r)\nr",
        "print(repr(client), client.credits())",
        "bad = lk.Client(api_key=os.environ['CANARY_WRONG_KEY'], base_url=client.base_url)\n"
        "bad.chat('this must fail')",
        "exp = lk.Experiment('nb', prompts={'a': '{{ q }}', 'b': 'Q: {{ q }}'},\n"
        "                    dataset=[{'id': str(i), 'q': f'question {i}'} for i in range(4)])\n"
        "run = exp.run(client, progress=False)\nrun.to_csv('notebook.csv')\nrun.results",
        "ax = plots.cost_per_variant(run)\nax.figure.savefig('notebook.png')\nax",
        "lk.runs()",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, path)


def _execute(path: Path, out: Path) -> Any:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    nbformat.write(nb, out)
    return nb


def test_the_api_key_appears_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    debug_logging: _Records,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    texts: list[str] = []  # every exception text and repr we produce

    def remember(exc: BaseException) -> None:
        texts.append(str(exc))
        texts.append(repr(exc))
        texts.append("".join(traceback.format_exception(exc)))

    store = Store(tmp_path / "store" / "canary.db")
    with lk.local_server(backend="scripted", api_key=CANARY, credits=5.0) as srv:
        texts += [repr(srv), str(srv.stats())]
        client = srv.client(max_retries=0)
        texts += [repr(client), str(client)]
        # 1. A chat, and a conversation saved to the store.
        r = client.chat("hello, canary", max_tokens=16)
        texts += [repr(r), str(r.raw)]
        conv = lk.Conversation(client, system="be brief", store=store)
        conv.send("first turn")
        texts.append(repr(conv))

        # 2. An experiment with errors: injected 500s end up recorded on cells.
        srv.set_faults(fail_rate=0.4, seed=7)
        exp = lk.Experiment(
            "canary",
            prompts={"plain": "{{ q }}", "polite": "Please: {{ q }}"},
            dataset=[{"id": str(i), "q": f"question {i}", "expected": "x"} for i in range(10)],
            scorers=[scoring.contains()],
        )
        run = exp.run(client, progress=False, store=store)
        srv.set_faults(fail_rate=0.0)
        assert run.results["error"].notna().any(), "no error was recorded: the test lost its point"
        texts += [repr(run), run.results.to_string(), str(run.summary())]

        # 3. The same experiment with a wrong key: 401, raised.
        wrong = lk.Client(api_key=WRONG, base_url=srv.url + "/v1", max_retries=0)
        texts.append(repr(wrong))
        with pytest.raises(APIError) as info:
            lk.Experiment("canary-401", prompts="{{ q }}", dataset=[{"q": "x"}]).run(
                wrong, progress=False, store=store
            )
        assert info.value.status == 401
        remember(info.value)
        with pytest.raises(APIError) as info:
            wrong.chat("hello")
        remember(info.value)
        # A key rejected before any request (it has a space) is not quoted either.
        with pytest.raises(LlamakitError) as bad:
            lk.Client(api_key=CANARY + " x", base_url=srv.url + "/v1")
        remember(bad.value)

        # 4. CSV exports.
        run.to_csv(tmp_path / "results.csv")
        lk.runs(store=store).to_csv(tmp_path / "runs.csv")

        # 5. Plots, saved as images (SVG keeps every label as text).
        from llamakit import plots

        for name, ax in [
            ("credit_spend", plots.credit_spend(store=store)),
            ("cost_per_variant", plots.cost_per_variant(run)),
            ("latency", plots.latency(run)),
            ("scores", plots.scores(run)),
        ]:
            ax.figure.savefig(tmp_path / f"{name}.png")
            ax.figure.savefig(tmp_path / f"{name}.svg")

        # 6. A notebook, executed in its own kernel, configured the way a user would: env vars.
        monkeypatch.setenv("SEGMIND_API_KEY", CANARY)
        monkeypatch.setenv("SEGMIND_BASE_URL", srv.url + "/v1")
        monkeypatch.setenv("CANARY_WRONG_KEY", WRONG)
        nb_dir = tmp_path / "nb"
        nb_dir.mkdir()
        _notebook(nb_dir / "canary.ipynb")
        executed = _execute(nb_dir / "canary.ipynb", nb_dir / "canary.executed.ipynb")
        outputs = [o for c in executed.cells for o in c.get("outputs", [])]
        errors = [o.get("ename") for o in outputs if o.get("output_type") == "error"]
        # After lk.connect(), a llamakit error is shown as one stderr line (see _notebook_errors).
        errors += [
            line.split(":", 1)[0]
            for o in outputs
            if o.get("output_type") == "stream" and o.get("name") == "stderr"
            for line in o.get("text", "").splitlines()
            if line.endswith("(%tb shows the full traceback)")
        ]
        assert errors == ["AuthenticationError"], outputs  # every other cell worked
        assert any("DEBUG" in o.get("text", "") for o in outputs)  # debug logging really was on
        assert (nb_dir / "notebook.csv").exists() and (nb_dir / "notebook.png").exists()
        texts.append(str(srv.stats()))
    store.close()

    captured = capfd.readouterr()
    assert debug_logging.lines, "no log records captured"
    assert any("httpx" in line or "HTTP Request" in line for line in debug_logging.lines)
    leaks = {
        "files": _scan_tree(tmp_path),
        "home": _scan_tree(Path(os.environ["LLAMAKIT_HOME"]))
        if Path(os.environ["LLAMAKIT_HOME"]).exists()
        else {},
        "stdout": _leaks(captured.out.encode()),
        "stderr": _leaks(captured.err.encode()),
        "log records": _leaks("\n".join(debug_logging.lines).encode()),
        "exception texts and reprs": _leaks("\n".join(texts).encode()),
    }
    assert not any(leaks.values()), leaks


def test_the_canary_search_finds_a_planted_key(tmp_path: Path) -> None:
    """The search itself works: a key written anywhere (plain, hex, UTF-16, partly) is found."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "plain.txt").write_text(f"header x-api-key: {CANARY}\n")
    (tmp_path / "utf16.txt").write_bytes(f"key={CANARY}".encode("utf-16-le"))
    (tmp_path / "masked.txt").write_text(f"SG_****{SECRET_HEX[-12:]}")
    (tmp_path / "clean.txt").write_text("SG_c**** nothing here")
    found = _scan_tree(tmp_path)
    assert set(found) == {str(tmp_path / n) for n in ("a/plain.txt", "utf16.txt", "masked.txt")}
