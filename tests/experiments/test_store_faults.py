"""A paid reply is never lost, and a store that cannot be used says so before any credit is spent.

Replies UTF-8 cannot hold, a disk that fills up mid-run (``RLIMIT_FSIZE`` in a runner process),
damaged, read-only, missing and newer-schema stores. Billing is read from the real local server's
ledger.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from exp_helpers import billed, client_of, rows, write_lock_held_elsewhere

import llamakit as lk
from llamakit.store import Store
from llamakit.store._spill import spill_path

SURROGATE = "lone \ud800 surrogate"


def _experiment(items: int = 4, *, filler: int = 0, name: str = "faults") -> lk.Experiment:
    data = [{**r, "filler": "x" * filler} for r in rows(items)]
    prompt = "{{ filler }} What is {{ a }} + {{ b }}?" if filler else "What is {{ a }} + {{ b }}?"
    return lk.Experiment(name, prompts={"plain": prompt}, dataset=data, params={"max_tokens": 8})


def _surrogate_proxy(srv: Any) -> httpx.MockTransport:
    """Forwards every request to the real server (which bills it), then puts a lone surrogate in
    the reply text: legal JSON (``"\\ud800"``) that the real server cannot itself send."""
    upstream = httpx.Client()

    def handle(request: httpx.Request) -> httpx.Response:
        reply = upstream.send(
            httpx.Request(
                request.method, request.url, headers=request.headers, content=request.read()
            )
        )
        body = reply.json()
        if isinstance(body, dict) and body.get("choices"):
            body["choices"][0]["message"]["content"] = SURROGATE
        headers = {k: v for k, v in reply.headers.items() if k.lower() not in
                   ("content-length", "content-encoding", "transfer-encoding")}  # fmt: skip
        return httpx.Response(reply.status_code, headers=headers, content=json.dumps(body).encode())

    return httpx.MockTransport(handle)


def test_a_reply_with_a_lone_surrogate_is_stored_and_a_rerun_pays_nothing(server) -> None:
    client = client_of(server, transport=_surrogate_proxy(server))
    run = _experiment().run(client, progress=False)
    assert run.status == "finished" and billed(server) == 4
    assert run.results["response"].tolist() == [SURROGATE] * 4
    again = _experiment(name="faults-again").run(client, progress=False)
    assert billed(server) == 4 and again.results["response"].tolist() == [SURROGATE] * 4
    store = Store(run.store.path)  # a fresh connection reads the same text back
    assert {r["text"] for r in store.query("SELECT text FROM responses")} == {SURROGATE}


def test_every_text_column_keeps_what_utf8_cannot_hold(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    odd = "a\udfff b \ud83d"
    store.record_chat_turn(
        conversation_id="c\ud800",
        index=0,
        messages=[{"role": "user", "content": odd}],
        response=None,
        error=odd,
    )
    turn = store.chat_turns("c\ud800")[0]
    assert turn["error"] == odd and json.loads(turn["messages"])[0]["content"] == odd
    store.record_call(
        {"cell_key": "k", "messages": [{"role": "user", "content": odd}], "params": {},
         "repeat": 0, "text": odd},
        [{"run_id": "r", "cell_id": "c", "cell_key": "k", "variant": odd, "item_id": "i",
          "params": {}, "repeat": 0, "prompt": [odd], "row": {"q": odd}, "status": "done",
          "error_message": odd}],
    )  # fmt: skip
    assert store.cached_responses(["k"])["k"]["text"] == odd
    cell = store.run_cells("r")[0]
    assert cell["variant"] == odd and cell["error_message"] == odd and cell["text"] == odd
    assert json.loads(cell["row"]) == {"q": odd}


FULL_RUNNER = textwrap.dedent(
    """
    import os, resource, signal, sys
    sys.path.insert(0, sys.argv[4])
    import llamakit as lk
    from test_store_faults import _experiment
    # A disk that fills up: writes past the limit fail with EFBIG (the signal would kill us).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    client = lk.Client(os.environ["SEGMIND_API_KEY"], base_url=sys.argv[1] + "/v1")
    try:
        store = lk.Store(sys.argv[2])
        run = _experiment(300, filler=3000).run(client, concurrency=4, progress=False, store=store)
        print("RESULT", run.status)
    except lk.StoreError as exc:
        print("STOREERROR", exc.problem, exc)
    """
)


def _run_limited(srv: Any, db: Path, limit: int) -> str:
    env = {**os.environ, "SEGMIND_API_KEY": srv.api_key}
    out = subprocess.run(
        [sys.executable, "-c", FULL_RUNNER, srv.url, str(db), str(limit), str(Path(__file__).parent)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_store_that_fills_up_stops_the_run_and_keeps_every_billed_reply(tmp_path: Path) -> None:
    db = tmp_path / "full.db"
    with lk.local_server(backend="scripted", credits=100.0, latency_ms=2) as srv:
        out = _run_limited(srv, db, 2 * 1024 * 1024)
        assert out.startswith("STOREERROR full"), out
        assert str(db) in out and "Free disk space" in out
        paid = billed(srv)
        assert 0 < paid < 300
        # The replies the store could not take are in the spill file beside it ...
        assert spill_path(db).exists()
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        in_db = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        conn.close()
        assert in_db < paid  # (some billed replies reached only the spill file)
        store = Store(db)  # ... and opening the store (no limit now) takes them in.
        assert not spill_path(db).exists()
        stored = store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"]
        assert stored == paid  # every billed reply recoverable
        (status,) = [r["status"] for r in store.query("SELECT status FROM runs")]
        assert status == "failed"  # not left "running"
        assert (
            store.query("SELECT COUNT(*) AS n FROM run_sessions WHERE finished_at IS NULL")[0]["n"]
            == 0
        )
        store.close()
        client = lk.Client(srv.api_key, base_url=srv.url + "/v1")  # as the runner's
        rerun = _experiment(300, filler=3000).run(
            client, concurrency=4, progress=False, store=Store(db)
        )
        assert rerun.status == "finished"
        assert billed(srv) == 300  # each cell paid for exactly once, over both processes
        print(f"\nRLIMIT_FSIZE=2MB: billed {paid} before the stop, {in_db} in the store and "
              f"{paid - in_db} in the spill file, all {stored} stored on reopen; "
              f"rerun billed {300 - paid} more = 300 cells")  # fmt: skip


def test_a_store_too_full_to_open_fails_before_any_credit_is_spent(tmp_path: Path) -> None:
    with lk.local_server(backend="scripted", credits=100.0) as srv:
        out = _run_limited(srv, tmp_path / "tiny.db", 8192)
        assert out.startswith("STOREERROR full") and str(tmp_path / "tiny.db") in out, out
        assert billed(srv) == 0


def test_a_damaged_store_names_its_path_and_the_fix(tmp_path: Path, server) -> None:
    path = tmp_path / "damaged.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(lk.StoreError) as info:
        Store(path)
    assert info.value.problem == "damaged" and str(path) in str(info.value)
    assert "Restore it from a backup" in str(info.value)
    # A store damaged after it was opened: the run stops before paying.
    good = Store(tmp_path / "good.db")
    good._db.query("DROP TABLE claims")  # a missing table stands for a page that reads as garbage
    with pytest.raises(lk.StoreError):
        _experiment().run(client_of(server), progress=False, store=good)
    assert billed(server) == 0


def test_a_store_from_a_newer_llamakit_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO _migrations VALUES ('m099_from_the_future', 0)")
    conn.commit()
    conn.close()
    for readonly in (None, True):
        with pytest.raises(lk.StoreError) as info:
            Store(path, readonly=readonly)
        assert info.value.problem == "newer-schema" and "m099_from_the_future" in str(info.value)
        assert "upgrade" in str(info.value) and str(path) in str(info.value)


def test_llamakit_runs_on_a_missing_path_does_not_create_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "llamakit.db"
    out = subprocess.run(
        [sys.executable, "-m", "llamakit.cli", "runs", "--store", str(missing)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # Refused while parsing the arguments (status 2), naming the path.
    assert out.returncode == 2 and "no store at" in out.stderr and str(missing) in out.stderr
    assert "Traceback" not in out.stderr
    assert not missing.exists() and not missing.parent.exists()


READ_ONLY = textwrap.dedent(
    """
    import os, sys
    import llamakit as lk
    store = lk.Store(sys.argv[1])
    print("readonly", store.readonly, "runs", len(lk.runs(store)))
    client = lk.Client(os.environ["SEGMIND_API_KEY"], base_url=sys.argv[2] + "/v1")
    exp = lk.Experiment("ro", prompts={"p": "hi {{ a }}"}, dataset=[{"id": "1", "a": 1}])
    try:
        exp.run(client, progress=False, store=store)
    except lk.StoreError as exc:
        print("STOREERROR", exc.problem, exc)
    """
)


def test_a_read_only_store_can_be_read_and_a_run_on_it_fails_before_paying(
    tmp_path: Path, server
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "llamakit.db"
    _experiment(2).run(client_of(server), progress=False, store=Store(db))
    paid = billed(server)
    command = [sys.executable, "-c", READ_ONLY, str(db), server.url]
    if os.geteuid() == 0:  # root ignores file modes unless it drops the capability to
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a file read-only")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *command]
    db.chmod(0o444)
    folder.chmod(0o555)
    try:
        env = {**os.environ, "SEGMIND_API_KEY": server.api_key}
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    finally:
        folder.chmod(0o755)
        db.chmod(0o644)
    assert out.returncode == 0, out.stderr
    assert "readonly True runs 1" in out.stdout, out.stdout
    assert "STOREERROR read-only" in out.stdout and str(db) in out.stdout
    assert billed(server) == paid


def test_a_chat_reply_the_store_cannot_take_is_kept_and_stored_on_the_next_open(
    tmp_path: Path, server
) -> None:
    from llamakit.store._connection import Database

    path = tmp_path / "chat.db"
    store = Store(path)
    conv = lk.Conversation(server.client(), store=store)
    conv.send("first")
    store._db = Database(path, readonly=True)  # from now on every write fails
    with pytest.raises(lk.StoreError) as info:
        conv.send("second")
    assert str(spill_path(path)) in str(info.value)
    assert len(conv) == 2 and conv.messages[-1]["role"] == "assistant"  # the reply is not lost
    reopened = Store(path)
    turns = reopened.chat_turns(conv.id)
    assert [t["idx"] for t in turns] == [0, 1]
    assert json.loads(turns[1]["messages"])[-1]["content"] == "second"
    assert turns[1]["response"] == conv.messages[-1]["content"]
    assert not spill_path(path).exists()
    assert len(Store(path).chat_turns(conv.id)) == 2  # applied once


def test_a_folder_where_the_store_should_be_is_named(tmp_path: Path) -> None:
    (tmp_path / "x.db").mkdir()
    with pytest.raises(lk.StoreError) as info:
        Store(tmp_path / "x.db")
    assert "a folder" in str(info.value) and str(tmp_path / "x.db") in str(info.value)


def test_a_run_that_fails_before_its_first_call_is_not_left_running(tmp_path: Path, server) -> None:
    store = Store(tmp_path / "s.db")
    bad = server.client(api_key="SG_not_the_right_key_000000")
    with pytest.raises(lk.AuthenticationError):
        _experiment().run(bad, progress=False, store=store)
    assert [r["status"] for r in store.query("SELECT status FROM runs")] == ["failed"]
    assert billed(server) == 0


REPLY = {"cell_key": "k" * 64, "model": "llama-v3-8b-instruct", "messages": [], "params": {},
         "repeat": 0, "text": "paid", "finish_reason": "stop", "latency_s": 0.1, "attempts": 1,
         "started_at": 0.0, "finished_at": 0.0, "credits": "0.00063"}  # fmt: skip


def test_a_store_locked_past_the_busy_timeout_names_the_lock_and_keeps_the_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the write lock longer than the store waits: the error says so (not
    "database is locked, check the file and the disk"), how to find the holder, and where the
    paid reply went; the next open stores it."""
    from llamakit.store import _connection

    monkeypatch.setattr(_connection, "BUSY_TIMEOUT_S", 0.3)
    db = tmp_path / "s.db"
    store = Store(db)
    with write_lock_held_elsewhere(db), pytest.raises(lk.StoreError) as info:
        store.record_call(REPLY)
    err = info.value
    assert err.problem == "locked", err
    assert "another process" in str(err) and f"fuser {db}" in str(err)
    assert f"the paid reply was kept in {spill_path(db)}" in str(err)
    store.close()
    reopened = Store(db)
    assert reopened.query("SELECT COUNT(*) AS n FROM responses")[0]["n"] == 1


def test_replies_the_disk_refuses_twice_are_not_called_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store's write fails and so does the spill file's: the error must not promise the
    replies are kept; it says how many went to stderr only, and how to save them."""

    class Failing(Store):
        def _write_call(self, tx: Any, response: Any, cells: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

    db = tmp_path / "s.db"
    store = Failing(db)
    spill_path(db).mkdir()  # the spill file cannot be opened for writing (EISDIR)
    calls = [({**REPLY, "cell_key": f"{i:064x}"}, ()) for i in range(3)]
    with pytest.raises(lk.StoreError) as info:
        store.record_calls(calls)
    text = str(info.value)
    assert "kept in" not in text and "nothing paid is lost" not in text
    assert "3 paid replies were" in text and "stderr only" in text and "a rerun pays" in text
    assert capsys.readouterr().err.count("the unsaved record follows") == 3


EXCLUSIVE_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode = EXCLUSIVE")  # keeps the file locked after the commit
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO chat_turns (conversation_id, idx, messages, created_at) "
             "VALUES ('elsewhere', 0, '[]', 0)")
conn.execute("COMMIT")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def test_a_read_only_open_of_a_store_locked_elsewhere_says_locked_and_never_reads_it_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process has written the store and keeps it locked. Reading the file as immutable
    (as if nobody could be writing it) would show the store without that process's commits, or
    torn pages ("damaged"); the open says the store is locked, and reads it once it is free."""
    from llamakit.store import _connection

    monkeypatch.setattr(_connection, "BUSY_TIMEOUT_S", 0.3)
    db = tmp_path / "s.db"
    Store(db).close()
    with write_lock_held_elsewhere(db, EXCLUSIVE_HOLDER):
        with pytest.raises(lk.StoreError) as info:
            Store(db, readonly=True)
        assert info.value.problem == "locked" and str(db) in str(info.value)
    store = Store(db, readonly=True)
    assert store.query("SELECT COUNT(*) AS n FROM chat_turns")[0]["n"] == 1


def test_a_store_with_damaged_pages_is_called_damaged_however_it_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    with path.open("r+b") as f:  # keep the 100-byte header, garble the schema page after it
        f.seek(100)
        f.write(b"\xa5" * 3000)
    for readonly in (None, True):
        with pytest.raises(lk.StoreError) as info:
            Store(path, readonly=readonly)
        assert info.value.problem == "damaged" and "Restore it from a backup" in str(info.value)


def test_one_value_that_is_not_json_does_not_call_the_store_damaged(tmp_path: Path) -> None:
    """SQLite says "malformed JSON" for one bad value; the file itself is fine."""
    path = tmp_path / "s.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO runs (run_id, name, fingerprint, status, mode, started_at, cells_total, "
        "config) VALUES ('r1', 'n', 'f', 'done', 'full', 0, 0, 'not json')"
    )
    conn.commit()
    conn.close()
    with pytest.raises(lk.StoreError) as info:
        lk.runs(Store(path, readonly=True))
    assert info.value.problem != "damaged" and "malformed JSON" in str(info.value)
    assert "Restore it from a backup" not in str(info.value)
