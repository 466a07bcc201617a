"""The console's agent, spend and alerts pages and the runs page's filters, over real HTTP
against a real ``corral up`` with a model server on loopback: each shows what the store
holds, and each action goes through the daemon's own operations."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from corral.testing import CorralProject, wait_for
from tests.console_client import Browser
from tests.models.fake_servers import FakeServer, Reply, openai_body

FAILS = """
def run(ctx):
    raise RuntimeError("<b>broken</b> on purpose")
"""
SLOW = """
import time

def run(ctx):
    time.sleep(60)
"""


def _failed_run(project: CorralProject) -> dict[str, Any]:
    """Run ``fails`` to its end (``corral run --wait`` exits non-zero for a failed run)."""
    run = json.loads(project.cli("run", "fails", "--wait", "--json").stdout)
    assert run["state"] == "failed", run
    return run


@pytest.fixture
def console(chat: CorralProject) -> Iterator[Browser]:
    chat.tables["console"] = {"listen": "127.0.0.1:0"}
    chat.agents["chat"].update(every="1h", budget={"day_cost_usd": 1.0}, input={"calls": 1, "q": '"><b>'})
    chat.agent("fails", FAILS, on_crash="fail", max_attempts=1)
    chat.agent("slow", SLOW)
    chat.start_daemon()
    browser = Browser(chat)
    browser.log_in()
    yield browser
    browser.http.close()


def test_the_agent_page_shows_its_config_runs_spend_and_runs_it(console: Browser, server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body("fine")))
    page = console.http.get("/agents/chat")
    assert page.status_code == 200
    for shown in ("interval", "word_count", "openai fake-gpt", "$1.00", "next fire", "No runs yet"):
        assert shown in page.text, shown
    assert 'placeholder="{&#34;calls&#34;: 1, &#34;q&#34;: &#34;\\&#34;&gt;&lt;b&gt;&#34;}"' in page.text
    token = console.csrf("/agents/chat")
    bad = console.http.post("/agents/chat/run", data={"csrf": token, "input": "{calls: 1"})
    assert bad.status_code == 400 and "not valid JSON" in bad.text
    started = console.http.post("/agents/chat/run", data={"csrf": token, "input": '{"calls": 1}'})
    assert started.status_code == 303 and started.headers["location"].startswith("/runs/")
    run_id = started.headers["location"].rsplit("/", 1)[1]
    assert console.project.wait_for_run(run_id)["state"] == "succeeded"
    page = console.http.get("/agents/chat").text
    assert run_id in page and '<rect class="bar"' in page and "1 calls" in page
    overview = console.http.get("/").text
    assert "<meter" in overview and 'href="/agents/chat"' in overview
    assert re.search(r"fake <span class=\"breaker breaker-closed\">closed", overview), "breaker per endpoint"
    assert console.http.get("/agents/nobody").status_code == 404


def test_pause_for_a_time_resume_disable_and_enable(console: Browser) -> None:
    token = console.csrf("/agents/chat")
    refused = console.http.post("/agents/chat/pause", data={"csrf": token, "for": "soon"})
    assert refused.status_code == 400 and "not a duration" in refused.text
    paused = console.http.post("/agents/chat/pause", data={"csrf": token, "for": "2h"})
    assert paused.status_code == 303 and paused.headers["location"] == "/agents/chat"
    status = console.project.cli_json("status")["agents"]["chat"]
    assert status["state"] == "paused" and 7100 < status["pause"]["until"] - time.time() <= 7200
    assert "until" in console.http.get("/agents/chat").text
    assert console.http.post("/agents/chat/resume", data={"csrf": token}).status_code == 303
    assert console.http.post("/agents/chat/stop", data={"csrf": token}).status_code == 303
    page = console.http.get("/agents/chat").text
    assert "Stopped" in page and "Enable (start)" in page
    not_run = console.http.post("/agents/chat/run", data={"csrf": token})
    assert not_run.status_code == 409 and "stopped" in not_run.text
    assert console.http.post("/agents/chat/start", data={"csrf": token}).status_code == 303
    status = console.project.cli_json("status")["agents"]["chat"]
    assert status["state"] in ("idle", "queued", "running"), status


def test_spend_by_day_agent_and_model_with_a_csv_export(console: Browser, server: FakeServer) -> None:
    server.enqueue(Reply(body=openai_body("one")), Reply(body=openai_body("two")))
    run = console.project.cli_json("run", "chat", "--wait", "--input", '{"calls": 2}')
    assert run["state"] == "succeeded", run
    page = console.http.get("/spend")
    assert page.status_code == 200 and "2 model calls" in page.text
    assert '<rect class="bar"' in page.text and 'href="/agents/chat"' in page.text and "fake" in page.text
    exported = console.http.get("/spend.csv?days=3")
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["agent"], r["model"], r["calls"]) for r in rows] == [("chat", "fake", "2")]
    spent = console.project.cli_json("spend", "--by", "agent")["groups"]["chat"]
    assert rows[0]["cost_usd"] == spent["cost_usd"] and int(rows[0]["input_tokens"]) == spent["input_tokens"]


def test_the_alerts_page_says_where_each_alert_went(console: Browser) -> None:
    run = _failed_run(console.project)
    deadline = time.monotonic() + 10
    while run["id"][-8:] not in (page := console.http.get("/alerts").text):
        assert time.monotonic() < deadline, page
        time.sleep(0.2)
    assert "log" in page and "delivered" in page
    assert "<b>broken" not in page, "alert text is escaped"
    assert run["id"][-8:] not in console.http.get("/alerts?agent=chat").text


def test_the_runs_page_filters_by_since_and_pages_through_an_agents_runs(console: Browser) -> None:
    runs = [_failed_run(console.project) for _ in range(3)]
    made = [run["id"] for run in runs]
    page = console.http.get("/runs?since=1h&agent=fails").text
    assert all(run_id in page for run_id in made)
    older = console.http.get(f"/runs?agent=fails&before={made[2]}").text
    assert made[2] not in older and made[1] in older and made[0] in older
    between = dt.datetime.fromtimestamp((runs[0]["created"] + runs[1]["created"]) / 2, dt.UTC).isoformat()
    since = console.http.get("/runs", params={"since": between}).text
    assert made[2] in since and made[1] in since and made[0] not in since
    everyone = console.http.get("/runs", params={"since": between, "before": made[2]}).text
    assert made[1] in everyone and made[2] not in everyone and made[0] not in everyone
    refused = console.http.get("/runs?since=yesterday")
    assert refused.status_code == 400 and "neither a duration nor a date" in refused.text
    future = console.http.get("/runs?since=2999-01-01T00:00")
    assert future.status_code == 400 and "future" in future.text


def test_the_overview_shows_an_open_breaker_with_its_reason(chat: CorralProject, server: FakeServer) -> None:
    chat.tables["console"] = {"listen": "127.0.0.1:0"}
    chat.models["fake"].update(breaker_failures=1, breaker_cool_down=300.0, breaker_wait=0)
    chat.start_daemon()
    browser = Browser(chat)
    browser.log_in()
    try:
        assert re.search(r"fake <span class=\"breaker breaker-closed\">closed", browser.http.get("/").text)
        server.enqueue(Reply(status=503))
        chat.cli("run", "chat", "--wait", "--input", '{"calls": 1}')  # its one call gets a 503
        deadline = time.monotonic() + 10
        while 'breaker-open">open' not in (page := browser.http.get("/").text):
            assert time.monotonic() < deadline, page
            time.sleep(0.2)
        assert "503" in page
    finally:
        browser.http.close()


def test_disabling_an_agent_from_the_console_records_who_in_the_stop_and_its_cancelled_run(console: Browser) -> None:
    project = console.project
    run_id = project.cli_json("run", "slow")["id"]
    wait_for(lambda: project.cli_json("runs", "--agent", "slow")[0]["state"] == "running", "the slow run to start")
    token = console.csrf("/agents/slow")
    assert console.http.post("/agents/slow/stop", data={"csrf": token}).status_code == 303
    who = re.search(r"console session [0-9a-f]{6}", project.cli_json("status")["agents"]["slow"]["pause"]["reason"])
    assert who is not None, "the stop's reason names the session"
    run = project.wait_for_run(run_id)
    assert run["state"] == "cancelled" and run["changes"][-1]["by"] == who.group(), run["changes"]
    assert console.http.post("/agents/slow/start", data={"csrf": token}).status_code == 303
    lines = [json.loads(line) for line in (project.home / "logs" / "corral.log").read_text().splitlines()]
    assert any(line.get("event") == "agent started" and line.get("by") == who.group() for line in lines)
