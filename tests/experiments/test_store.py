"""The SQLite store: migrations, WAL, where it lives, two writing processes, no key on disk."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from exp_helpers import client_of, make_experiment, write_lock_held_elsewhere

import llamakit as lk
from llamakit.store import Store
from llamakit.store._migrations import MIGRATIONS


def test_migrations_are_recorded_once_and_a_reopened_store_applies_none(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    assert store.migrations() == [m.__name__ for m in MIGRATIONS]
    store.close()
    again = Store(path)
    assert again.migrations() == [m.__name__ for m in MIGRATIONS]
    assert again.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"


def test_llamakit_home_is_read_when_the_store_is_built(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LLAMAKIT_HOME", str(tmp_path / "elsewhere"))
    assert Store().path == tmp_path / "elsewhere" / "llamakit.db"
    monkeypatch.delenv("LLAMAKIT_HOME")
    monkeypatch.chdir(tmp_path)
    assert Store().path == tmp_path / ".llamakit" / "llamakit.db"


WRITER = textwrap.dedent(
    """
    import sys
    from llamakit.store import Store
    store = Store(sys.argv[1])
    for i in range(int(sys.argv[3])):
        store.record_chat_turn(conversation_id=sys.argv[2], index=i,
                               messages=[{"role": "user", "content": str(i)}],
                               response=None, error=None)
        store.record_call({"cell_key": f"{sys.argv[2]}-{i}", "messages": [], "params": {},
                           "repeat": 0, "text": "x"})
    """
)


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"  # fresh: both processes also race to migrate it
    n = 300
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(n)])
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = Store(path)
    assert store.query("SELECT COUNT(*) AS n FROM chat_turns")[0]["n"] == 2 * n
    assert store.query("SELECT COUNT(*) AS n FROM responses")[0]["n"] == 2 * n
    assert store.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
    assert store.migrations() == [m.__name__ for m in MIGRATIONS]


def test_chat_turns_are_recorded(tmp_path: Path, server) -> None:
    store = Store(tmp_path / "c.db")
    response = server.client().chat("hello", max_tokens=8)
    messages = [{"role": "user", "content": "hello"}]
    store.record_chat_turn(
        conversation_id="c1", index=0, messages=messages, response=response, error=None
    )
    store.record_chat_turn(
        conversation_id="c1", index=1, messages=messages, response=None, error="ServerError"
    )
    turns = store.chat_turns("c1")
    assert [t["idx"] for t in turns] == [0, 1]
    assert turns[0]["response"] == response.text and turns[1]["error"] == "ServerError"


def test_the_api_key_is_never_written_to_the_store(tmp_path: Path) -> None:
    canary = "SG_canary_5f2d9e0b7c1a4e3f"
    with lk.local_server(
        backend="scripted", api_key=canary, credits=10.0, fail_rate=0.3, seed=1
    ) as srv:
        run = make_experiment(items=3, repeats=1).run(client_of(srv), progress=False)
        run.to_csv(tmp_path / "out.csv")
    run.store.close()
    home = Path(run.store.path).parent
    for path in [*home.iterdir(), tmp_path / "out.csv"]:
        assert canary.encode() not in path.read_bytes(), path


def test_runs_lists_every_run_with_its_spend(server) -> None:
    make_experiment(items=2, repeats=1).run(client_of(server), progress=False)
    # same requests at repeat 0 come from the cache; only repeat 1 is new and paid for
    make_experiment(items=2, repeats=2, name="other").run(client_of(server), progress=False)
    frame = lk.runs()
    assert list(frame["name"]) == ["arith", "other"]
    assert list(frame["cells_done"]) == [6, 12] and list(frame["errors"]) == [0, 0]
    assert frame["credits_spent"].tolist() == [6 * Decimal("0.00063")] * 2
    assert str(frame["started_at"].dtype) == "datetime64[ns, UTC]"
    assert set(frame["spend_source"]) == {"balance"}
    loaded = lk.load_run(frame["run_id"][0])
    assert len(loaded.results) == 6 and loaded.status == "finished"


def test_an_old_store_upgrades_itself_to_the_newest_schema(tmp_path: Path) -> None:
    import sqlite3

    from llamakit.store._migrations import m001_initial

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)  # a store written by a release that had only m001
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    m001_initial(conn)
    conn.execute("INSERT INTO _migrations VALUES ('m001_initial', 0)")
    conn.execute(
        "INSERT INTO chat_turns (conversation_id, idx, messages, created_at) VALUES ('c', 0, '[]', 0)"
    )
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.migrations() == [m.__name__ for m in MIGRATIONS]
    assert len(MIGRATIONS) >= 2
    assert store.query("SELECT COUNT(*) AS n FROM inflight")[0]["n"] == 0
    assert len(store.chat_turns("c")) == 1  # old rows kept


def test_a_write_that_must_not_wait_gives_way_to_another_process(tmp_path: Path) -> None:
    """``wait=False`` (the runner's commit on its event loop) raises WouldWait at once while
    another process holds the write lock, leaves the busy timeout as it was, and writes once
    the lock is free."""
    from llamakit.store import WouldWait
    from llamakit.store._connection import BUSY_TIMEOUT_S, Database

    path = tmp_path / "s.db"
    Store(path).close()  # the schema, in WAL mode
    db = Database(path)
    with write_lock_held_elsewhere(path) as holder:
        started = time.monotonic()
        with pytest.raises(WouldWait), db.write(wait=False) as tx:
            tx.execute("CREATE TABLE never (x)")
        assert time.monotonic() - started < 1.0
        assert db.query("PRAGMA busy_timeout")[0][0] == int(BUSY_TIMEOUT_S * 1000)
    assert holder.returncode == 0
    with db.write(wait=False) as tx:
        tx.execute("CREATE TABLE now (x)")
    assert db.query("SELECT name FROM sqlite_master WHERE name IN ('never', 'now')")[0][0] == "now"
    db.close()


def test_a_write_that_must_not_wait_gives_way_to_a_thread_of_this_process(tmp_path: Path) -> None:
    from llamakit.store import WouldWait
    from llamakit.store._connection import Database

    db = Database(tmp_path / "s.db")
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write():
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(30)
        with pytest.raises(WouldWait), db.write(wait=False):
            pass
    finally:
        release.set()
        thread.join()
    with db.write(wait=False) as tx:
        tx.execute("CREATE TABLE t (x)")
    db.close()


RUN_ELSEWHERE = textwrap.dedent(
    """
    import sys
    import llamakit as lk
    with lk.local_server(backend="scripted") as srv:
        name = "elsewhere" + sys.argv[2]
        data = [{"q": f"q{j} {name}"} for j in range(150)]
        exp = lk.Experiment(name, prompts="{{ q }}", dataset=data, params={"max_tokens": 4})
        exp.run(srv.client(), concurrency=8, progress=False, store=lk.Store(sys.argv[1]))
    """
)


def test_read_only_stores_kept_open_while_another_process_runs_stay_readable(
    tmp_path: Path,
) -> None:
    """A notebook keeps each read-only Store it opened while another process runs experiments on
    the same file and exits. Every open, old and new, reads the store as it is: opening one must
    not drop the SQLite locks the others hold (a writer that thinks it is the file's last user
    deletes the shared-memory index they still read through, and they then read wrong pages)."""
    path = tmp_path / "s.db"

    def run_elsewhere(i: int) -> None:
        subprocess.run([sys.executable, "-c", RUN_ELSEWHERE, str(path), str(i)], check=True)

    run_elsewhere(0)
    held: list[Store] = []
    for i in range(1, 7):
        held.append(Store(path, readonly=True))
        assert [len(lk.runs(s)) for s in held] == [i] * i
        run_elsewhere(i)
    assert [len(lk.runs(s)) for s in held] == [7] * 6
    assert held[0].query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"


def test_opening_a_store_again_keeps_the_locks_of_the_one_already_open(tmp_path: Path) -> None:
    """Another process that writes and closes the store must still see this process reading it
    (so it leaves the write-ahead log and its index alone), however often the path is reopened."""
    path = tmp_path / "s.db"
    Store(path).close()
    held = Store(path, readonly=True)
    for i in range(1, 4):
        Store(path, readonly=True).close()
        writer = WRITER + "\nstore.close()\n"
        subprocess.run([sys.executable, "-c", writer, str(path), f"p{i}", "5"], check=True)
        assert held.query("SELECT COUNT(*) AS n FROM responses")[0]["n"] == 5 * i
        assert held.query("SELECT COUNT(*) AS n FROM chat_turns")[0]["n"] == 5 * i
