"""A signed approval link in a real browser (Debian's chromium, through Playwright): a phone
with no session opens the link an alert carried, sees the held call, approves with one tap,
and the run resumes; opening the link again shows that it is used."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from corral.console.links import Links, load_key
from tests.browser.site import Site

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

PHONE = {"width": 390, "height": 844}


def _link(site: Site, run_id: str) -> str:
    """The link the approval alert of ``run_id`` carries: made as the console makes it, with
    the key in the daemon's home (this site has no sink to receive alerts)."""
    [request] = [a for a in site.project.cli_json("approvals") if a["run_id"] == run_id]
    return Links(load_key(site.project.home), site.url).url(request["id"], request["expires"])


def test_open_a_signed_approval_link_in_a_fresh_context_and_approve(fresh_context: BrowserContext, site: Site) -> None:
    started = site.project.cli_json("run", "deployer", "--input", json.dumps("from-a-phone"))
    site.project.wait_for_run(started["id"], states=("on_hold",))
    link = _link(site, started["id"])
    phone = fresh_context.new_page()
    phone.set_viewport_size(PHONE)
    phone.goto(link)
    assert phone.get_by_role("heading", name="deployer wants deploy").is_visible()
    assert phone.get_by_text("from-a-phone").count() > 0
    assert site.project.run_record(started["id"])["state"] == "on_hold", "opening the link decided nothing"
    phone.get_by_role("button", name="Approve").click()
    phone.locator("#done").wait_for()
    assert "Approved" in phone.locator("#done").inner_text()
    final = site.project.wait_for_run(started["id"], states=("succeeded",))
    assert final["result"] == "deployed to from-a-phone"
    phone.goto(link)
    assert "used already" in phone.locator("#refusal").inner_text()
