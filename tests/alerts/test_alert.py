"""The Alert: validated at birth, and a lossless round trip through msgpack and JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import pytest

from corral.alerts import Alert, AlertError, Severity
from corral.errors import CorralError


def test_round_trip_through_msgpack_and_json(alert: Alert) -> None:
    data = alert.to_dict()
    assert Alert.from_dict(msgpack.unpackb(msgpack.packb(data))) == alert
    assert Alert.from_dict(json.loads(json.dumps(data))) == alert
    assert data == {
        "id": alert.id,
        "key": "run-failed:nightly",
        "severity": "critical",
        "title": alert.title,
        "body": alert.body,
        "agent": "nightly",
        "run_id": "run-123",
        "fields": {"attempt": 3, "cost_usd": 1.25, "resumable": True, "note": None},
        "created": 1_767_225_600.0,
        "resolved": False,
        "links": {},
    }


def test_defaults_and_severity_from_text() -> None:
    text: Any = "warning"  # as read back from a config file or the store
    alert = Alert(key="k", severity=text, title="t")
    assert alert.severity is Severity.WARNING
    assert len(alert.id) == 32 and alert.created > 1.7e9
    assert (alert.body, alert.agent, alert.run_id, dict(alert.fields), alert.resolved) == ("", None, None, {}, False)
    assert hash(alert) == hash(alert)  # usable in sets although fields is a dict


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"key": ""}, "alert key must be a non-empty string"),
        ({"title": "  "}, "alert title must be a non-empty string"),
        ({"severity": "fatal"}, "alert severity 'fatal' is not one of 'info', 'warning', 'critical'"),
        ({"agent": ""}, "alert agent must be a non-empty string or None"),
        ({"created": math.nan}, "alert created must be a finite number"),
        ({"resolved": "yes"}, "alert resolved must be true or false"),
        ({"fields": {"when": object()}}, "alert field 'when' is a object; give a string, number, boolean or None"),
        ({"fields": {"n": math.inf}}, "alert field 'n' is inf; give a finite number or a string"),
        ({"fields": {"big": 2**64}}, "alert field 'big' does not fit in 64 bits; give it as a string"),
        ({"fields": {1: "x"}}, "alert field names must be non-empty strings"),
        ({"links": ["http://x"]}, "alert links must be a map of names to URLs"),
        ({"links": {"approval": "javascript:alert(1)"}}, "alert link 'approval' must be an http"),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(changes: dict[str, object], message: str) -> None:
    values: dict[str, Any] = {"key": "k", "severity": "info", "title": "t", **changes}
    with pytest.raises(AlertError, match=message) as caught:
        Alert(**values)
    assert isinstance(caught.value, CorralError)


def test_from_dict_refuses_foreign_data(alert: Alert) -> None:
    with pytest.raises(AlertError, match=r"unknown keys \['extra'\]"):
        Alert.from_dict({**alert.to_dict(), "extra": 1})
    incomplete = alert.to_dict()
    del incomplete["created"]
    with pytest.raises(AlertError, match=r"lacks \['created'\]"):
        Alert.from_dict(incomplete)
    not_a_map: Any = [1, 2]
    with pytest.raises(AlertError, match="must be a map"):
        Alert.from_dict(not_a_map)
