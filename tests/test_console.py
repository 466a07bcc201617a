"""The console over real HTTP on 127.0.0.1, served by a real ``corral up``: nothing without
a session, the one-time login, CSRF on every action, agent-written text escaped, live
updates, and a console that cannot listen leaves the daemon running."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from corral.testing import CorralProject
from tests.console_client import Browser
from tests.projects import REFUSING, deployed, run_until_held

PAYLOAD = "<script>alert(1)</script>"
XSS_AGENT = """
import corral

def run(ctx):
    if ctx.input == "fail":
        raise ValueError("<script>alert('error')</script>")
    ctx.log.info("<script>alert('log')</script>", note="<img src=x onerror=alert(2)>")
    return "<script>alert(1)</script>"
"""


@pytest.fixture
def console(deployer: CorralProject) -> Iterator[Browser]:
    deployer.tables["console"] = {"listen": "127.0.0.1:0"}
    deployer.agent("xss", XSS_AGENT)
    deployer.agent("refusing", REFUSING, tools=["read_file"], on_crash="fail")
    deployer.start_daemon()
    browser = Browser(deployer)
    yield browser
    browser.http.close()


ROUTES = [
    ("GET", "/"),
    ("GET", "/runs"),
    ("GET", "/runs/01abc"),
    ("GET", "/approvals"),
    ("GET", "/agents/xss"),
    ("GET", "/spend"),
    ("GET", "/spend.csv"),
    ("GET", "/alerts"),
    ("GET", "/live"),
    ("GET", "/static/console.css"),
    ("POST", "/runs/01abc/cancel"),
    ("POST", "/agents/xss/run"),
    ("POST", "/agents/xss/stop"),
    ("POST", "/approvals/abc/approve"),
    ("POST", "/logout"),
]


def test_nothing_is_served_without_a_session(console: Browser) -> None:
    for method, path in ROUTES:
        answer = console.http.request(method, path)
        assert answer.status_code == 401, (method, path, answer.status_code)
        assert "corral console" in answer.text
    console.http.cookies.set("corral_session", "made-up")
    assert console.http.get("/").status_code == 401


def test_the_login_link_opens_a_session_once(console: Browser) -> None:
    answer = console.log_in()
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = console.http.get("/")
    assert page.status_code == 200 and "deployer" in page.text and "xss" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "same-origin"
    scripts = re.findall(r"<script[^>]*>", page.text)
    assert scripts and all('src="/static/' in tag for tag in scripts), "no inline script"
    assert "style=" not in page.text and "onclick" not in page.text
    again = httpx.get(console.login, follow_redirects=False)
    assert again.status_code == 401, "a login token works once"


def test_failed_logins_are_throttled_but_a_genuine_token_still_works(console: Browser) -> None:
    codes = [httpx.get(f"{console.url}/login?token=notatoken{i}").status_code for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    assert console.log_in().status_code == 303 and console.http.get("/").status_code == 200
    log = (console.project.home / "logs" / "corral.log").read_text()
    assert log.count("credentials that were not genuine") == 1 and "notatoken" not in log


def test_every_action_needs_the_sessions_csrf_token(console: Browser) -> None:
    console.log_in()
    token = console.csrf()
    for form in ({}, {"csrf": "stale"}, {"csrf": token[:-1]}):
        refused = console.http.post("/agents/xss/run", data=form)
        assert refused.status_code == 403 and "CSRF" in refused.text
    foreign = console.http.post("/agents/xss/run", data={"csrf": token}, headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert console.project.cli_json("runs") == [], "nothing refused reached the daemon"
    started = console.http.post("/agents/xss/run", data={"csrf": token, "input": '"hello"'})
    assert started.status_code == 303 and started.headers["location"].startswith("/runs/")
    run_id = started.headers["location"].rsplit("/", 1)[1]
    assert console.project.wait_for_run(run_id)["state"] == "succeeded"
    bad = console.http.post("/agents/xss/run", data={"csrf": token, "input": "{not json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.text


def test_agent_written_text_is_escaped_everywhere(console: Browser) -> None:
    console.log_in()
    ok = console.project.cli_json("run", "xss", "--wait")
    failed = console.project.cli("run", "xss", "--wait", "--input", '"fail"', "--json")
    failed_id = json.loads(failed.stdout)["id"]
    for run_id, shown in ((ok["id"], "alert(1)"), (failed_id, "alert(&#39;error&#39;)")):
        page = console.http.get(f"/runs/{run_id}")
        assert page.status_code == 200
        assert shown in page.text, page.text
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
    log_page = console.http.get(f"/runs/{ok['id']}").text
    assert "&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt;" in log_page, "the log line is shown, escaped"
    assert "&lt;img src=x onerror=alert(2)&gt;" in log_page
    for path in ("/", "/runs", "/runs?agent=xss&trigger=%3Cscript%3E"):
        page = console.http.get(path).text
        assert "<script>alert" not in page and "<script>" not in page.replace(
            '<script src="/static/console.js" defer></script>', ""
        )


def test_the_run_page_says_a_refused_step_was_refused(console: Browser) -> None:
    console.log_in()
    ran = json.loads(console.project.cli("run", "refusing", "--wait", "--json").stdout)
    page = console.http.get(f"/runs/{ran['id']}").text
    assert page.count(" · done · refused · ") == 3, page
    assert page.count("ToolCallError tool &#39;read_file&#39; refused the call: path") == 3, "two steps, and the run"
    assert (
        "ToolCallError invalid arguments for tool &#39;read_file&#39;" in page
        and "&#39;read_file&#39; failed" not in page
    )


def test_approving_from_the_console_resumes_the_run(console: Browser) -> None:
    console.log_in()
    approval, run = run_until_held(console.project, PAYLOAD)
    page = console.http.get("/approvals")
    assert approval in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert" not in page.text
    token = console.csrf("/approvals")
    refused = console.http.post(f"/approvals/{approval}/deny", data={"csrf": token, "reason": ""})
    assert refused.status_code == 400 and "needs a reason" in refused.text
    done = console.http.post(f"/approvals/{approval}/approve", data={"csrf": token, "reason": "looks fine"})
    assert done.status_code == 303
    assert console.project.wait_for_run(run["id"], ("succeeded",))["result"] == f"deployed to {PAYLOAD}"
    assert deployed(console.project) == [PAYLOAD]
    twice = console.http.post(f"/approvals/{approval}/approve", data={"csrf": token})
    assert twice.status_code == 409 and "already" in twice.text


def test_live_updates_arrive_as_server_sent_events(console: Browser) -> None:
    console.log_in()
    with console.http.stream("GET", "/live", timeout=20) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        run_id = console.project.cli_json("run", "xss")["id"]
        deadline = time.monotonic() + 15
        seen = []
        for line in lines:
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))
                if any(n["run"] == run_id and n["kind"] == "run_changed" for n in seen):
                    break
            assert time.monotonic() < deadline, seen
    assert {n["kind"] for n in seen} >= {"run_created", "run_changed"}
    fragment = console.http.get(f"/runs/{run_id}", headers={"x-corral-fragment": "1"})
    assert fragment.status_code == 200 and "<nav>" not in fragment.text and run_id in fragment.text


def test_a_console_that_cannot_listen_leaves_the_daemon_running(corral_project: CorralProject) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    corral_project.tables["console"] = {"listen": f"127.0.0.1:{taken.getsockname()[1]}"}
    corral_project.agent("hello", "def run(ctx):\n    return 'hi'\n")
    try:
        corral_project.start_daemon()
        refused = corral_project.cli("console")
        assert refused.returncode == 4 and "could not listen" in refused.stderr
        assert corral_project.cli_json("run", "hello", "--wait")["state"] == "succeeded"
    finally:
        taken.close()
    log = (corral_project.home / "logs" / "corral.log").read_text()
    assert "console cannot listen" in log


def test_corral_console_says_when_the_console_is_off(corral_project: CorralProject) -> None:
    corral_project.agent("hello", "def run(ctx):\n    return 'hi'\n")
    corral_project.start_daemon()
    refused = corral_project.cli("console")
    assert refused.returncode == 4 and "enabled = false" in refused.stderr
