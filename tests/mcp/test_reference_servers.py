"""The reference MCP servers from PyPI (the test extra), run as stdio servers in an agent's
sandbox: ``mcp-server-git`` on a repository in the agent's workdir, ``mcp-server-fetch``
against a page served on 127.0.0.1 (reached under the agent's own network grant; ``raw``, so
the server does not start Node.js for readability, which takes seconds)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from corral.testing import CorralProject
from tests.mcp.support import BIN, CALLER, call, steps

PAGE = "<html><head><title>Herd notes</title></head><body><p>The corral holds 12 horses.</p></body></html>"


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = PAGE.encode() if self.path == "/notes" else b"User-agent: *\nAllow: /\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path == "/notes" else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def page() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


@pytest.mark.slow
def test_mcp_server_git_on_a_repository_in_the_workdir(corral_project: CorralProject) -> None:
    project = corral_project
    repo = project.home / "agents" / "historian" / "repo"
    repo.mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "README").write_text("hello\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "First notes on the herd"], check=True)
    project.tables["mcp.git"] = {"command": [str(BIN / "mcp-server-git"), "--repository", "repo"]}
    project.agent("historian", CALLER, tools=["git.git_log", "git.git_status"])
    got = call(
        project,
        "historian",
        {"log": ("git.git_log", {"repo_path": "repo"}), "status": ("git.git_status", {"repo_path": "repo"})},
    )
    assert got["state"] == "succeeded", got
    result = got["result"]
    assert result["tools"] == ["git.git_log", "git.git_status"], "only the granted tools are offered"
    assert "First notes on the herd" in str(result["log"]["ok"])
    assert "branch" in str(result["status"]["ok"]).lower()
    assert [s["kind"] for s in steps(project, got["id"])][0] == "mcp"


@pytest.mark.slow
def test_mcp_server_fetch_reads_a_page_under_the_agents_network_grant(corral_project: CorralProject, page: int) -> None:
    project = corral_project
    project.tables["mcp.fetch"] = {
        "command": [str(BIN / "mcp-server-fetch"), "--ignore-robots-txt", "--allow-private-ips"]
    }
    url = f"http://127.0.0.1:{page}/notes"
    project.agent("reader", CALLER, tools=["fetch.fetch"], sandbox={"network": [f"127.0.0.1:{page}"]})
    got = call(project, "reader", {"page": ("fetch.fetch", {"url": url, "raw": True})})
    assert got["state"] == "succeeded", got
    assert "12 horses" in str(got["result"]["page"]), got["result"]
    project.agent("reader", CALLER, tools=["fetch.fetch"])  # network "none": the server, in the sandbox, is cut off too
    got = call(project, "reader", {"page": ("fetch.fetch", {"url": url, "raw": True})})
    assert "12 horses" not in str(got["result"]["page"]), got["result"]
