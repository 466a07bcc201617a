"""The runs page's walk on a real store: a filter that matches nothing stops after
:data:`corral.console.reads.SCAN` runs and still offers the next page."""

from __future__ import annotations

from pathlib import Path

from corral.config import load_config
from corral.console import reads
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
