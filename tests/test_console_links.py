"""Signed approval links over real HTTP on 127.0.0.1, against a real ``corral up``: the
link an approval alert carries (here through a webhook sink to a receiver on loopback)
opens its page without a login, decides with one confirming POST, once; an expired,
reused (also after a restart) or tampered link is refused with a page saying which; a
request decided twice names who decided it, from the console, a link and the CLI alike.
Each test starts a daemon: all but the tampered-link one are ``slow`` (the full suite runs them)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from corral.testing import CorralProject
from tests.alerts.receivers import HTTPReceiver
from tests.projects import deployed, run_until_held

PAYLOAD = "<script>alert(1)</script>"


@dataclass
class Linked:
    """A daemon with the console on, its approval alerts posted to ``chat``."""

    project: CorralProject
    chat: HTTPReceiver

    def link_for(self, approval: str = "", timeout: float = 15) -> str:
        """The signed link the approval's alert (any approval's, by default) carried to the webhook."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for request in list(self.chat.requests):
                alert = json.loads(request.body)
                if alert["key"].startswith(f"approval:{approval}") and not alert["resolved"]:
                    assert alert["links"]["approval"], alert
                    return str(alert["links"]["approval"])
            time.sleep(0.05)
        raise AssertionError(f"no alert with a link for approval {approval}: {self.chat.requests}")

    def held(self, payload: str = PAYLOAD) -> tuple[str, dict[str, Any], str]:
        approval, run = run_until_held(self.project, payload)
        return approval, run, self.link_for(approval)


@pytest.fixture
def linked(deployer: CorralProject) -> Iterator[Linked]:
    chat = HTTPReceiver()
    deployer.tables["console"] = {"listen": "127.0.0.1:0"}
    deployer.tables["alerts"] = {
        "route": {"info": ["chat"], "warning": ["chat"], "critical": ["chat"]},
        "sinks": {"chat": {"type": "webhook", "url": chat.url("/hook")}},
    }
    deployer.start_daemon()
    yield Linked(deployer, chat)
    chat.close()


def _form(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _approval(project: CorralProject, approval: str) -> dict[str, Any]:
    [record] = [a for a in project.cli_json("approvals", "--all") if a["id"] == approval]
    return dict(record)


@pytest.mark.slow
def test_a_link_approves_with_one_tap_once_and_stays_used_after_a_restart(linked: Linked) -> None:
    project = linked.project
    approval, run, link = linked.held()
    assert urlsplit(link).path == f"/link/{approval}"
    sig = parse_qs(urlsplit(link).query)["sig"][0]
    assert not [log for log in (project.home / "logs").iterdir() if sig in log.read_text()], "the link is never logged"
    assert (project.home / "console.key").stat().st_mode & 0o777 == 0o600
    phone = httpx.Client(follow_redirects=False, timeout=10)  # no login, no session
    page = phone.get(link)
    assert page.status_code == 200, page.text
    assert "deploy" in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script" not in page.text, "no script at all on the link page, and the payload escaped"
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    style = phone.get(f"{urlsplit(link).scheme}://{urlsplit(link).netloc}/link/style/console.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css"), "styled without a session"
    assert 'href="/link/style/console.css"' in page.text
    phone.get(link)
    assert _approval(project, approval)["state"] == "pending", "opening the link (twice) decides nothing"

    for form in ({"decision": "approve"}, {"decision": "approve", "csrf": "made-up"}):
        refused = phone.post(link, data=form)
        assert refused.status_code == 403 and "CSRF" in refused.text
    cookieless = httpx.post(link, data={"decision": "approve", "csrf": _form(page)})
    assert cookieless.status_code == 403, "the token is bound to the page's cookie"
    foreign = phone.post(link, data={"decision": "approve", "csrf": _form(page)}, headers={"origin": "http://evil"})
    assert foreign.status_code == 403
    assert _approval(project, approval)["state"] == "pending"

    done = phone.post(link, data={"decision": "approve", "csrf": _form(page), "reason": "from the bus"})
    assert done.status_code == 200 and "Approved" in done.text, done.text
    assert project.wait_for_run(run["id"], ("succeeded",))["result"] == f"deployed to {PAYLOAD}"
    assert deployed(project) == [PAYLOAD]
    record = _approval(project, approval)
    assert (
        record["decided_by"] == "approval link" and record["link_used"] and record["decision_reason"] == "from the bus"
    )
    again = phone.post(link, data={"decision": "approve", "csrf": _form(page)})
    assert again.status_code == 410 and "used already" in again.text and "approval link" in again.text

    project.cli("stop", check=True)
    project.start_daemon()
    parts = urlsplit(link)  # port 0: the restarted console listens elsewhere; the link's path is the same
    reopened = httpx.get(f"{project.cli_json('console')['url']}{parts.path}?{parts.query}")
    assert reopened.status_code == 410 and "used already" in reopened.text, "a restart does not revive a used link"
    trace = project.cli("trace", run["id"], check=True).stdout
    assert "approval link" in trace, trace


def test_tampered_links_are_refused_and_limited_but_a_genuine_one_still_works(linked: Linked) -> None:
    approval, _, link = linked.held()
    parts = urlsplit(link)
    query = parse_qs(parts.query)
    base = f"{parts.scheme}://{parts.netloc}"
    sig, until = query["sig"][0], query["until"][0]
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    tampered = [
        f"{base}/link/{approval}?until={until}&sig={flipped}",
        f"{base}/link/{approval}?until={int(until) + 3600}&sig={sig}",
        f"{base}/link/{approval[:-1]}0?until={until}&sig={sig}",
        f"{base}/link/{approval}?until={until}",
        f"{base}/link/{approval}?until=soon&sig={sig}",
    ]
    for url in tampered:
        page = httpx.get(url)
        assert page.status_code == 403 and "not genuine" in page.text, (url, page.status_code)
    forged = httpx.post(tampered[0], headers={"x-corral-action": "approve"})
    assert forged.status_code == 403
    assert _approval(linked.project, approval)["state"] == "pending"
    codes = [httpx.get(tampered[0]).status_code for _ in range(12)]
    assert codes[-1] == 429, "guessing links is rate-limited like logins"
    genuine = httpx.get(link)
    assert genuine.status_code == 200 and "Approve" in genuine.text, "a genuine link works at the limit"
    assert httpx.get(linked.project.cli_json("console")["login"], follow_redirects=False).status_code == 303


@pytest.mark.slow
def test_an_expired_link_is_refused(deployer: CorralProject) -> None:
    chat = HTTPReceiver()
    try:
        deployer.agents["deployer"]["guardrails"] = {"approval_timeout": "4s"}
        deployer.tables["console"] = {"listen": "127.0.0.1:0"}
        deployer.tables["alerts"] = {
            "route": {"warning": ["chat"]},
            "sinks": {"chat": {"type": "webhook", "url": chat.url("/hook")}},
        }
        deployer.start_daemon()
        run = deployer.cli_json("run", "deployer", "--input", json.dumps(PAYLOAD))
        link = Linked(deployer, chat).link_for()
        approval = urlsplit(link).path.rsplit("/", 1)[1]
        deployer.wait_for_run(run["id"], ("succeeded",))
        page = httpx.get(link)
        assert page.status_code == 410 and "expired" in page.text
        button = httpx.post(link, headers={"x-corral-action": "approve"})
        assert button.status_code == 410 and "expired" in button.text
        assert _approval(deployer, approval)["state"] == "expired"
    finally:
        chat.close()


@pytest.mark.slow
def test_a_notification_button_decides_and_a_second_decision_names_the_first(linked: Linked) -> None:
    project = linked.project
    approval, run, link = linked.held()
    preview = httpx.get(link, headers={"x-corral-action": "deny"})
    assert preview.status_code == 200 and _approval(project, approval)["state"] == "pending", "a GET never decides"
    wrong = httpx.post(link, headers={"x-corral-action": "maybe"})
    assert wrong.status_code == 400
    denied = httpx.post(link, headers={"x-corral-action": "deny"})
    assert denied.status_code == 200 and "Denied" in denied.text, denied.text
    final = project.wait_for_run(run["id"], ("succeeded",))
    assert final["result"]["refused"] == "denied", final
    assert deployed(project) == []
    record = _approval(project, approval)
    assert record["decided_by"] == "approval link (notification button)"
    cli = project.cli("approve", approval)
    assert cli.returncode != 0 and "already denied by approval link (notification button)" in cli.stderr
    assert _approval(project, approval)["state"] == "denied", "nothing changed"


@pytest.mark.slow
def test_a_request_decided_in_the_console_refuses_the_link_and_the_cli(linked: Linked) -> None:
    project = linked.project
    approval, run, link = linked.held()
    found = project.cli_json("console")
    browser = httpx.Client(base_url=found["url"], follow_redirects=False, timeout=10)
    browser.get(found["login"])
    token = _form(browser.get("/approvals"))
    assert browser.post(f"/approvals/{approval}/approve", data={"csrf": token}).status_code == 303
    project.wait_for_run(run["id"], ("succeeded",))
    by = _approval(project, approval)["decided_by"]
    assert re.fullmatch(r"console session [0-9a-f]{6}", by), by
    page = httpx.get(link)
    assert page.status_code == 409 and f"already approved by {by}" in page.text and "nothing changed" in page.text
    cli = project.cli("deny", approval, "--reason", "too late")
    assert cli.returncode != 0 and f"already approved by {by}" in cli.stderr
    twice = browser.post(f"/approvals/{approval}/approve", data={"csrf": token})
    assert twice.status_code == 409 and f"already approved by {by}" in twice.text
    approvals_page = browser.get("/approvals").text
    assert by in approvals_page
    run_page = browser.get(f"/runs/{run['id']}").text
    assert f"approved approval {approval} by {by}" in run_page and "started by cli" in run_page

    _, held, _ = linked.held()
    token = _form(browser.get(f"/runs/{held['id']}"))
    assert browser.post(f"/runs/{held['id']}/cancel", data={"csrf": token}).status_code == 303
    cancelled = project.wait_for_run(held["id"], ("cancelled",))
    assert cancelled["error"]["message"] == f"cancelled by {by}"
    trace = project.cli("trace", held["id"], check=True).stdout
    assert "started by cli" in trace and f"cancelled by {by}" in trace, trace
