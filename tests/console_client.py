"""What one logged-in browser sends to a console, over real HTTP: the tests of the console's
routes use it (tests/test_console.py, tests/test_console_pages.py)."""

from __future__ import annotations

import re

import httpx

from corral.testing import CorralProject


class Browser:
    """An HTTP client with the console's cookie jar: what one logged-in browser sends."""

    def __init__(self, project: CorralProject) -> None:
        self.project = project
        found = project.cli_json("console")
        self.url = found["url"]
        self.login = found["login"]
        self.http = httpx.Client(base_url=self.url, follow_redirects=False, timeout=10)

    def log_in(self) -> httpx.Response:
        return self.http.get(self.login)

    def csrf(self, path: str = "/") -> str:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
