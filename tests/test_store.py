"""The LMDB store: one writer, readers elsewhere, growth, failures contained."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from corral.errors import StoreError, StoreLockedError
from corral.store import Records, Store, StoreLock, Writer, new_run_id, schema


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "store", map_mb=1)
    w = Writer(s)
    yield s, w, Records(s.dbs)
    w.close()
    s.close()


def test_second_writer_refuses_naming_the_holder(tmp_path: Path) -> None:
    first = StoreLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
            StoreLock(tmp_path).acquire()
        assert StoreLock(tmp_path).holder() == os.getpid()
    finally:
        first.release()
    assert StoreLock(tmp_path).holder() is None


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    code = (
        f"from corral.store import StoreLock; from pathlib import Path; import time\n"
        f"StoreLock(Path({str(tmp_path)!r})).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    assert StoreLock(tmp_path).holder() == proc.pid
    proc.kill()
    proc.wait()
    StoreLock(tmp_path).acquire()


def test_map_grows_instead_of_failing(store) -> None:
    s, w, records = store
    start = s.env.info()["map_size"]
    run_id = new_run_id()
    blob = os.urandom(64 * 1024)
    for seq in range(1, 81):
        w.call(lambda txn, seq=seq: records.put_step(txn, run_id, {"seq": seq, "blob": blob}))
    assert s.env.info()["map_size"] > start
    entries = w.call(lambda txn: list(records.steps(txn, run_id)))
    assert [e["seq"] for e in entries] == list(range(1, 81))


def test_the_last_steps_of_a_run_between_its_neighbours(store) -> None:
    """A run's last steps (the console's run page) stop at its own journal, whichever runs
    sort before and after it, and the first and last runs of the store included."""
    s, w, records = store
    first, middle, last = sorted(new_run_id() for _ in range(3))
    for run_id, count in ((first, 3), (middle, 12), (last, 5)):
        for seq in range(1, count + 1):
            w.call(lambda txn, run_id=run_id, seq=seq: records.put_step(txn, run_id, {"seq": seq, "run": run_id}))
    with s.read() as txn:
        assert records.last_steps(txn, middle, 4) == (12, [{"seq": seq, "run": middle} for seq in range(9, 13)])
        assert records.last_steps(txn, first, 10) == (3, [{"seq": seq, "run": first} for seq in (1, 2, 3)])
        assert records.last_steps(txn, last, 1) == (5, [{"seq": 5, "run": last}])
        assert records.last_steps(txn, last, 0) == (5, [])
        assert records.last_steps(txn, new_run_id(), 3) == (0, [])
        assert records.last_step(txn, middle) == {"seq": 12, "run": middle}


def test_a_failing_job_is_undone_alone_in_a_group_commit(store) -> None:
    s, w, records = store
    ok_id, bad_id = new_run_id(), new_run_id()

    def bad(txn):
        records.put_step(txn, bad_id, {"seq": 1})
        raise ValueError("job bug")

    futures = [w.submit(lambda txn: records.put_step(txn, ok_id, {"seq": 1})), w.submit(bad)]
    assert futures[0].result() > 0
    with pytest.raises(ValueError, match="job bug"):
        futures[1].result()
    assert w.call(lambda txn: records.get_step(txn, bad_id, 1)) is None
    assert w.call(lambda txn: records.get_step(txn, ok_id, 1)) == {"seq": 1}


def test_concurrent_jobs_share_commits(store) -> None:
    s, w, records = store
    run_id = new_run_id()
    before = w.commits
    futures = [w.submit(lambda txn, i=i: records.put_step(txn, run_id, {"seq": i})) for i in range(1, 201)]
    for f in futures:
        f.result()
    assert w.commits - before < 200, "jobs queued together commit together"


READER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from corral.store import Records, Store
    s = Store.open(Path(sys.argv[1]), readonly=True)
    r = Records(s.dbs)
    print("open", flush=True)
    for line in sys.stdin:
        with s.read() as txn:
            print(len(list(r.steps(txn, line.strip()))), flush=True)
    """
)


def test_reader_in_another_process_sees_commits_and_survives_map_growth(store, tmp_path: Path) -> None:
    s, w, records = store
    run_id = new_run_id()
    w.call(lambda txn: records.put_step(txn, run_id, {"seq": 1}))
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path / "store")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdin and reader.stdout
    assert reader.stdout.readline().strip() == "open"
    reader.stdin.write(run_id + "\n")
    reader.stdin.flush()
    assert reader.stdout.readline().strip() == "1"
    blob = os.urandom(128 * 1024)
    for seq in range(2, 41):
        w.call(lambda txn, seq=seq: records.put_step(txn, run_id, {"seq": seq, "blob": blob}))
    reader.stdin.write(run_id + "\n")
    reader.stdin.flush()
    assert reader.stdout.readline().strip() == "40"
    reader.stdin.close()
    assert reader.wait(10) == 0


def test_stale_reader_slot_of_a_killed_reader_is_cleared(store, tmp_path: Path) -> None:
    s, w, records = store
    code = textwrap.dedent(
        f"""
        import lmdb, time
        env = lmdb.open({str(tmp_path / "store")!r}, readonly=True, max_dbs=16)
        txn = env.begin()
        print("reading", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout and proc.stdout.readline().strip() == "reading"
    assert str(proc.pid) in s.env.readers()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert w.call(lambda txn: s.env.reader_check()) >= 1
    assert str(proc.pid) not in s.env.readers()


def test_store_from_a_newer_corral_is_refused(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "store")
    with s.env.begin(write=True) as txn:
        txn.put(b"schema", schema.pack(schema.SCHEMA_VERSION + 1), db=s.dbs["meta"])
    s.close()
    with pytest.raises(StoreError, match="newer corral"):
        Store.open(tmp_path / "store")


def test_each_agents_state_total_is_counted_by_the_migration_and_kept_by_every_write(tmp_path: Path) -> None:
    """limits.state_mb is checked against a total kept in ``meta``; a store from before it
    (schema 3) gets the total counted once when the daemon opens it."""
    s = Store.open(tmp_path / "store")
    records = Records(s.dbs)
    with s.env.begin(write=True) as txn:
        txn.put(schema.state_key("a", "k1"), schema.pack("x" * 100), db=s.dbs["state"])
        txn.put(schema.state_key("a", "key2"), schema.pack([1, 2]), db=s.dbs["state"])
        txn.put(schema.state_key("b", "k"), schema.pack(None), db=s.dbs["state"])
        txn.put(b"schema", schema.pack(3), db=s.dbs["meta"])
    s.close()
    s = Store.open(tmp_path / "store")
    records = Records(s.dbs)
    with s.env.begin(write=True) as txn:
        counted = {agent: records.state_bytes(txn, agent) for agent in ("a", "b", "c")}
        assert counted == {"a": (2 + 102) + (4 + 3), "b": 1 + 1, "c": 0}
        records.set_state(txn, "a", "k1", "short")  # replaced: the old value no longer counts
        assert records.state_bytes(txn, "a") == (2 + 6) + (4 + 3)
        assert records.state_after(txn, "a", "new", schema.pack("v")) == (2 + 6) + (4 + 3) + (3 + 2)
        assert records.delete_state(txn, "a", "key2") is True
        assert records.delete_state(txn, "a", "key2") is False
        assert records.state_bytes(txn, "a") == 2 + 6
        assert records.agent_state(txn, "a") == {"k1": "short"}
    s.close()


def test_reader_without_a_store_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="corral up"):
        Store.open(tmp_path / "nothing", readonly=True)


def test_full_disk_fails_the_write_and_keeps_the_store(tmp_path: Path) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount permission)")
    try:
        s = Store.open(mount / "store", map_mb=64)
        events: list[str] = []
        w = Writer(s, on_event=lambda level, message: events.append(message))
        records = Records(s.dbs)
        run_id = new_run_id()
        w.call(lambda txn: records.put_step(txn, run_id, {"seq": 1}))
        blob = os.urandom(256 * 1024)
        with pytest.raises(StoreError, match="store write failed"):
            for seq in range(2, 40):
                w.call(lambda txn, seq=seq: records.put_step(txn, run_id, {"seq": seq, "blob": blob}))
        assert any("store write failed" in e for e in events)
        w.close()
        s.close()
        reopened = Store.open(mount / "store", readonly=True)
        with reopened.read() as txn:
            entries = list(Records(reopened.dbs).steps(txn, run_id))
        assert entries[0] == {"seq": 1}
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1)), "committed prefix intact"
        reopened.close()
    finally:
        time.sleep(0.1)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_runs_newest_first_pages_from_before_by_agent_and_in_all(store) -> None:
    """A page starts below ``before``, through the agent index or the runs themselves, and the
    oldest run of the last agent in the index has nothing below it (no wrap to the newest)."""
    s, w, records = store
    ids = [f"{ms:012x}00000000" for ms in range(1000, 1006)]
    for i, run_id in enumerate(ids):
        run = {"id": run_id, "agent": "b" if i % 2 else "a", "state": "succeeded"}
        w.call(lambda txn, run=run: records.put_run(txn, run))

    def page(agent: str | None, before: str | None) -> list[str]:
        return w.call(lambda txn: [r["id"] for r in records.runs_newest_first(txn, agent, before=before)])

    assert page(None, None) == ids[::-1]
    assert page(None, ids[3]) == ids[2::-1]
    assert page(None, ids[0]) == []
    assert page(None, "zzzz") == ids[::-1]
    assert page("b", None) == [ids[5], ids[3], ids[1]]
    assert page("b", ids[3]) == [ids[1]]
    assert page("b", ids[1]) == []
    assert page("a", ids[4]) == [ids[2], ids[0]]
    assert page("a", ids[0]) == [], "the first key of the index has nothing below it"
