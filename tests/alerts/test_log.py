"""The log sink writes through corral's real log files."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from corral.alerts import Alert, LogSink
from corral.observe.logs import LogFiles


def test_alerts_become_log_lines_at_their_level(tmp_path: Path, alert: Alert) -> None:
    with LogFiles(tmp_path / "logs") as logs:
        sink = LogSink({}, logger=logs.logger())
        asyncio.run(sink.deliver(alert))
        asyncio.run(sink.deliver(dataclasses.replace(alert, resolved=True)))
    raised, resolved = (json.loads(line) for line in (tmp_path / "logs" / "corral.log").read_text().splitlines())
    assert raised["level"] == "critical" and raised["event"] == "alert raised"
    assert {k: raised[k] for k in ("alert_id", "key", "severity", "title", "body", "agent", "run_id", "fields")} == {
        "alert_id": alert.id,
        "key": alert.key,
        "severity": "critical",
        "title": alert.title,
        "body": alert.body,
        "agent": "nightly",
        "run_id": "run-123",
        "fields": {"attempt": 3, "cost_usd": 1.25, "resumable": True, "note": None},
    }
    assert resolved["level"] == "info" and resolved["event"] == "alert resolved"
    assert repr(sink) == "<LogSink [alerts.log] to corral's log>"
