"""The console in a real browser (Debian's chromium under Playwright) against a real daemon:
log in, see the example agents, run an agent from its page and watch the run live, approve
a held tool call and see the run resume, and agent-written markup that stays inert."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from tests.browser.site import Site
from tests.models.fake_servers import Reply, openai_body

if TYPE_CHECKING:
    from playwright.sync_api import Page

MARK = "corral-xss"
PAYLOADS = [
    f"<script>alert('{MARK} script')</script>",
    f"<img src=x onerror=\"alert('{MARK} img')\">",
    f"<svg onload=\"alert('{MARK} svg')\"></svg>",
    f"\"><script>window.pwned='{MARK}'</script>",
]
XSS = f"""
import corral

PAYLOADS = {PAYLOADS!r}

def run(ctx):
    if ctx.input == "fail":
        raise ValueError(PAYLOADS[0] + PAYLOADS[1])
    ctx.tool("write_file", path="p.html", content="".join(PAYLOADS))
    read = ctx.tool("read_file", path="p.html")
    answer = ctx.model([{{"role": "user", "text": PAYLOADS[2]}}], max_tokens=50)
    ctx.log.info(PAYLOADS[3], note=PAYLOADS[1], said=answer.text)
    return {{"read": read, "model": answer.text}}
"""
"""Puts every payload in a tool's arguments and result, the model's text, a log line's event
and fields, the run's result, and (with input "fail") its error."""
AGENTS = {"xss": XSS}
LIVE = 20_000
"""Milliseconds a live change may take to show (it takes well under a second)."""


def _live_state(page: Page, state: str) -> None:
    page.locator("h1 + p .state", has_text=re.compile(f"^{state}$")).wait_for(timeout=LIVE)


def test_log_in_and_see_the_example_agents(page: Page, site: Site) -> None:
    assert page.url == site.url + "/"
    agents = page.locator("table").first
    for name in ("counter", "digest", "summarize", "tidy"):
        assert agents.get_by_role("link", name=name, exact=True).is_visible(), name
    assert page.locator("#live-state.on").count() == 1 or page.locator("#live-state").count() == 1
    page.get_by_role("link", name="digest", exact=True).click()
    assert page.url.endswith("/agents/digest")
    assert page.get_by_text("append_line, read_lines, word_count").is_visible()


def test_run_from_the_agent_page_and_watch_it_finish_live(page: Page, site: Site) -> None:
    page.goto(site.url + "/agents/waiter")
    page.fill("#run-input", "{not json")
    page.get_by_role("button", name="Run now").click()
    assert "not valid JSON" in page.content()
    page.goto(site.url + "/agents/waiter")
    page.fill("#run-input", json.dumps({"ticket": 42}))
    page.get_by_role("button", name="Run now").click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    page.locator("#live-state.on").wait_for(timeout=LIVE)
    _live_state(page, "running")
    page.evaluate("window.stayed = true")  # gone if the page were loaded again
    page.locator("ol.steps li.step").first.wait_for(timeout=LIVE)  # its first step, as it is journaled
    (site.workdir("waiter") / "go").write_text("")
    _live_state(page, "succeeded")
    assert page.evaluate("window.stayed") is True, "the run page changed in place, not by a reload"
    assert page.get_by_text('"went"').count() > 0 and page.get_by_text("42").count() > 0
    page.get_by_role("button", name="Fork from here").first.click()  # the one fork form, named by each step's button
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]+$"))
    assert page.url.rsplit("/", 1)[1] != run_id
    _live_state(page, "succeeded")
    (site.workdir("waiter") / "go").unlink()
    page.goto(site.url + "/runs?agent=waiter")
    assert page.get_by_role("link", name=run_id).is_visible()


def test_approve_a_held_tool_call_and_see_the_run_resume(page: Page, site: Site) -> None:
    started = site.project.cli_json("run", "deployer", "--input", json.dumps("staging"))
    site.project.wait_for_run(started["id"], states=("on_hold",))
    page.goto(site.url + "/approvals")
    card = page.locator("article.card", has=page.get_by_role("link", name=started["id"]))
    card.get_by_role("button", name="Approve").click()
    page.wait_for_url(site.url + "/approvals")
    page.goto(site.url + f"/runs/{started['id']}")
    _live_state(page, "succeeded")
    assert page.get_by_text("deployed to staging").count() > 0


def test_agent_written_markup_stays_inert_on_every_page(page: Page, site: Site) -> None:
    site.model.enqueue(Reply(body=openai_body(PAYLOADS[0] + PAYLOADS[3])))
    ok = site.project.cli_json("run", "xss", "--wait")
    assert ok["state"] == "succeeded", ok
    failed = json.loads(site.project.cli("run", "xss", "--wait", "--json", "--input", '"fail"').stdout)
    assert failed["state"] == "failed", failed
    held = site.project.cli_json("run", "deployer", "--input", json.dumps(PAYLOADS[1]))
    site.project.wait_for_run(held["id"], states=("on_hold",))
    paths = [f"/runs/{ok['id']}", f"/runs/{failed['id']}", "/runs", "/", "/approvals", "/alerts", "/agents/xss"]
    for path in paths:
        page.goto(site.url + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.pwned") is None, path
        scripts = page.evaluate("Array.from(document.scripts).map(s => s.src || s.textContent)")
        assert scripts == [site.url + "/static/console.js"], (path, scripts)
        assert page.locator("img, svg[onload]").count() == 0, path
    assert page.dialogs == [], "no payload opened a dialog"  # type: ignore[attr-defined]
    page.goto(site.url + f"/runs/{ok['id']}")
    text = page.text_content("main") or ""
    for shown in (PAYLOADS[0], "<img src=x onerror=", "<svg onload=", "<script>window.pwned="):
        assert shown in text, f"{shown} is shown as text"
    page.goto(site.url + f"/runs/{failed['id']}")
    assert PAYLOADS[0] in (page.text_content("main") or "")
