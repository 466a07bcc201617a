"""Browser tests: Debian's ``chromium`` driven by Playwright (``executable_path``: Playwright's
own browser download is not used) against a real ``corral up`` serving the console.

Every test here is marked ``browser`` and ``slow`` (the quick run leaves them out; ``-m
browser`` runs only these). Without chromium or Playwright they are skipped with the
reason, except under CI (``CI`` set), where a missing browser fails: ``.ci/run`` installs it
(``tests/browser/install_chromium.sh``, named by the README's test command).

Fixtures another browser test can reuse:

- ``chromium``: one headless browser for the module;
- ``site``: a daemon running the example agents (examples/corral.toml) plus the test
  agents below, its console on a free port of 127.0.0.1, and a scripted model server;
- ``page``: a fresh browser context logged in with a one-time link, on the overview;
- ``fresh_context``: a browser context with no cookies and no session (a phone opening a
  link from an alert).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.site import Site, chromium_path, example_project
from tests.models.fake_servers import FakeServer
from tests.projects import KEY, KEY_VAR

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


def _missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI installs it (tests/browser/install_chromium.sh and the [test] extra)")
    pytest.skip(f"{why}; run `sh tests/browser/install_chromium.sh` (as root) and `pip install -e '.[test]'`")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Debian chromium for the module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed")
    executable = chromium_path()
    if executable is None:
        _missing("no chromium on PATH")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Site]:
    """The example agents and the test agents (a module's ``AGENTS``: name -> source) under
    one daemon whose console listens on 127.0.0.1."""
    agents: dict[str, str] = getattr(request.module, "AGENTS", {})
    model = FakeServer().start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_VAR, KEY)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            patch.delenv(name, raising=False)
        project = example_project(tmp_path_factory.mktemp("site"), model.url, agents)
        try:
            project.start_daemon()
            yield Site(project, model, str(project.cli_json("console")["url"]))
        finally:
            project.close()
            model.stop()


@pytest.fixture
def fresh_context(chromium: Browser) -> Iterator[BrowserContext]:
    """A context with no cookie and no session: what a phone opening an alert's link has."""
    context = chromium.new_context()
    yield context
    context.close()


@pytest.fixture
def page(chromium: Browser, site: Site) -> Iterator[Page]:
    """A logged-in page (its own context and session) on the overview; every dialog it
    opens is recorded in ``page.dialogs`` and dismissed."""
    context = chromium.new_context()
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    opened.dialogs = dialogs  # type: ignore[attr-defined]
    opened.goto(site.login_link())
    yield opened
    context.close()
