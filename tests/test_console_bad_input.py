"""Bad input to the console's pages and forms is a clear 400 or 404 page, never a 500: days
and step numbers in digits other than ASCII (``"²".isdigit()`` is true and ``int("²")``
fails; ``int("٣")`` is 3), numbers of thousands of digits, a run's input nested past the
recursion limit or holding NaN or Infinity, run ids that are not ASCII (the store's keys
are), and a HEAD of a genuine approval link, which shows the page like a GET and decides
nothing. One daemon serves them all, over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from corral.console.links import Links, load_key
from corral.testing import CorralProject
from tests.console_client import Browser
from tests.projects import DEPLOY_PLUGIN, DEPLOYER, run_until_held


@dataclass
class Served:
    """A logged-in browser on a daemon holding one finished run and one waiting approval."""

    browser: Browser
    run_id: str
    approval: str
    link: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    project = CorralProject(tmp_path_factory.mktemp("bad-input"))
    try:
        plugin = project.root / "deploy_plugin.py"
        plugin.write_text(DEPLOY_PLUGIN)
        project.corral["plugins"] = [str(plugin)]
        project.agent("deployer", DEPLOYER, tools=["deploy"])
        project.agent("hello", "def run(ctx):\n    return 'hi'\n")
        project.tables["console"] = {"listen": "127.0.0.1:0"}
        project.start_daemon()
        run_id = project.cli_json("run", "hello", "--wait")["id"]
        approval, _ = run_until_held(project, "prod")
        [waiting] = project.cli_json("approvals")
        browser = Browser(project)
        assert browser.log_in().status_code == 303
        link = Links(load_key(project.home), browser.url).url(approval, waiting["expires"])
        yield Served(browser, run_id, approval, link)
        browser.http.close()
    finally:
        project.close()


HUGE = "9" * 5000
DEEP = "[" * 60_000
PAGES = [
    ("/spend?days=²", 400, "not a number of days"),
    ("/spend?days=" + HUGE, 400, "not a number of days"),
    ("/spend.csv?days=²", 400, "not a number of days"),
    ("/alerts?days=²", 400, "not a number of days"),
    ("/alerts?days=٣", 400, "not a number of days"),
    ("/agents/hello?days=²", 400, "not a number of days"),
    ("/agents/hello?days=" + HUGE, 400, "not a number of days"),
    ("/runs?before=%C3%A9", 400, "is not a run id"),
    ("/runs/%C3%A9", 404, "run é"),
]
FORMS = [
    ("/runs/RUN/fork", {"from": "²"}, 400, "step number to start from"),
    ("/runs/RUN/fork", {"from": "٣"}, 400, "step number to start from"),
    ("/runs/RUN/fork", {"from": HUGE}, 400, "step number to start from"),
    ("/runs/%C3%A9/cancel", {}, 404, "run é"),
    ("/agents/hello/run", {"input": DEEP}, 400, "not valid JSON (nested too deeply: corral keeps"),
    ("/agents/hello/run", {"input": "NaN"}, 400, "not valid JSON (NaN is not a JSON value"),
    ("/agents/hello/run", {"input": '{"a": Infinity}'}, 400, "not valid JSON (Infinity is not a JSON value"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "status", "said"), PAGES, ids=[p[0][:30] for p in PAGES])
def test_a_bad_query_is_a_clear_page(served: Served, path: str, status: int, said: str) -> None:
    answer = served.browser.http.get(path)
    assert answer.status_code == status and said in answer.text, (answer.status_code, answer.text[:300])
    assert "content-security-policy" in answer.headers


@pytest.mark.slow
@pytest.mark.parametrize(("path", "form", "status", "said"), FORMS, ids=[f"{f[0]}-{str(f[1])[:20]}" for f in FORMS])
def test_a_bad_form_is_a_clear_page(served: Served, path: str, form: dict[str, str], status: int, said: str) -> None:
    path = path.replace("RUN", served.run_id)
    token = served.browser.csrf()
    body = "&".join(f"{key}={value}" for key, value in {"csrf": token, **form}.items())  # raw: 60,000 '[' fit
    headers = {"content-type": "application/x-www-form-urlencoded"}
    answer = served.browser.http.post(path, content=body.encode(), headers=headers)
    assert answer.status_code == status and said in answer.text, (answer.status_code, answer.text[:300])
    assert served.browser.project.cli_json("runs", "--agent", "hello")[0]["id"] == served.run_id, "nothing started"


@pytest.mark.slow
def test_a_head_of_a_genuine_link_shows_it_and_decides_nothing(served: Served) -> None:
    head = httpx.head(served.link)
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/html")
    [waiting] = served.browser.project.cli_json("approvals")
    assert waiting["id"] == served.approval and waiting["state"] == "pending", "a HEAD decides nothing"
