"""The console's reads on a real store and log: the runs page's walk (a filter that matches
nothing stops after :data:`corral.console.reads.SCAN` runs and still offers the next page),
and a run's own log lines."""

from __future__ import annotations

from pathlib import Path

from corral.config import load_config
from corral.console import reads
from corral.observe.logs import LogFiles
from corral.store import Records, Store, Writer


def test_a_filter_matching_nothing_stops_its_walk_and_offers_the_next_page(tmp_path: Path) -> None:
    config_path = tmp_path / "corral.toml"
    config_path.write_text(f'[corral]\nhome = "{tmp_path / "home"}"\n')
    store = Store.open(tmp_path / "store", map_mb=64)
    writer = Writer(store)
    records = Records(store.dbs)
    total = reads.SCAN + 30
    ids = [f"{1000 + i:012x}00000000" for i in range(total)]
    runs = [{"id": run_id, "agent": "a", "state": "succeeded", "created": 1.0} for run_id in ids]
    writer.call(lambda txn: [records.put_run(txn, run) for run in runs])
    writer.close()
    try:
        view = reads.StoreView(store, records, load_config(config_path, environ={}))
        first = reads.runs(view, "", "failed", "", None, "")
        assert first["runs"] == [] and first["scanned"] == reads.SCAN
        assert first["next"] == ids[-reads.SCAN], "the next page starts below the last run looked at"
        rest = reads.runs(view, "a", "failed", "", None, first["next"])
        assert rest["runs"] == [] and rest["scanned"] == 30 and rest["next"] == ""
        newest = reads.runs(view, "", "", "", None, "")
        assert [r["id"] for r in newest["runs"]] == ids[::-1][: reads.PAGE] and newest["next"] == ids[-reads.PAGE]
    finally:
        store.close()


def test_a_runs_log_lines_are_its_own_whatever_later_runs_say_about_it(tmp_path: Path) -> None:
    """A run's page shows its own last lines: a later run of the agent naming it in 150 lines
    (its id in a field) neither shows there nor pushes its lines out of view."""
    config_path = tmp_path / "corral.toml"
    config_path.write_text(f'[corral]\nhome = "{tmp_path / "home"}"\n')
    config = load_config(config_path, environ={})
    store = Store.open(tmp_path / "store", map_mb=64)
    writer = Writer(store)
    records = Records(store.dbs)
    quiet, busy, naming = (f"{1000 + i:012x}00000000" for i in range(3))
    runs = [{"id": run_id, "agent": "a", "state": "succeeded", "created": 1.0} for run_id in (quiet, busy, naming)]
    writer.call(lambda txn: [records.put_run(txn, run) for run in runs])
    writer.close()
    with LogFiles(config.log_dir) as files:
        for n in range(42):
            files.logger("a").info("tick", run_id=quiet, n=n)
        for n in range(150):
            files.logger("a").info("tick", run_id=busy, n=n)
        for n in range(150):
            files.logger("a").info("note", run_id=naming, other=quiet, n=n)
    try:
        view = reads.StoreView(store, records, config)
        page = reads.run(view, quiet)
        assert [line["n"] for line in page["logs"]] == list(range(42)) and not page["more_logs"]
        page = reads.run(view, busy)
        assert [line["n"] for line in page["logs"]] == list(range(150 - reads.STEPS_SHOWN, 150))
        assert page["more_logs"]
        every = reads.run(view, busy, every_step=True)
        assert [line["n"] for line in every["logs"]] == list(range(150)) and not every["more_logs"]
    finally:
        store.close()
