"""The console's defences over real HTTP against a real ``corral up``: sessions end and a live
page then leads back to the login; failed logins are limited per minute, never a genuine token; TLS with a
``Secure`` cookie (its own certificate, or a proxy's https ``public_url``); bad input and bytes that
are not HTTP leave the console and the daemon serving; a sandboxed agent cannot reach the
console (network "none", or a network list without its port, and a list with its port is refused at load)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trustme
from structlog.testing import CapturingLogger

from corral.config import parse_config
from corral.console.auth import FAILED_LOGINS, FAILED_WINDOW, Logins
from corral.errors import ConfigError
from corral.store import Records, Store
from corral.testing import CorralProject

HELLO = "def run(ctx):\n    return 'hi'\n"


def _console(project: CorralProject) -> tuple[str, str]:
    found = project.cli_json("console")
    return str(found["url"]), str(found["login"])


def _started(project: CorralProject, **console: str) -> None:
    """A daemon with one agent and the console on a free port (``console``: more keys)."""
    project.tables["console"] = {"listen": "127.0.0.1:0", **console}
    project.agent("hello", HELLO)
    project.start_daemon()


@pytest.mark.slow
def test_a_session_ends_after_its_age_and_a_live_page_then_leads_to_the_login(corral_project: CorralProject) -> None:
    _started(corral_project, session_max_age="2s")
    url, login = _console(corral_project)
    browser = httpx.Client(base_url=url, follow_redirects=False, timeout=10)
    assert browser.get(login).status_code == 303
    assert browser.get("/").status_code == 200
    time.sleep(2.5)
    for headers in ({}, {"x-corral-fragment": "1"}):  # a page, and the live script's refetch (it reloads on 401)
        ended = browser.get("/", headers=headers)
        assert ended.status_code == 401 and "session ended" in ended.text and "corral console" in ended.text
    _, fresh = _console(corral_project)
    assert browser.get(fresh).status_code == 303 and browser.get("/").status_code == 200, "a new login works"


def test_failed_logins_are_limited_per_minute_but_a_genuine_token_always_works() -> None:
    now = [1000.0]
    log = CapturingLogger()
    gate = Logins(3600.0, log, clock=lambda: now[0])
    token = gate.mint()
    over = []
    for _ in range(FAILED_LOGINS + 2):
        assert gate.login("notatoken") is None
        over.append(gate.failed("login token"))
    assert over == [False] * FAILED_LOGINS + [True, True], "the 11th failure in a minute gets 429"
    session = gate.login(token)
    assert session is not None and session.expires == now[0] + 3600.0, "a genuine token works at the limit"
    [logged] = log.calls
    assert logged.kwargs["failed"] == 1 and "notatoken" not in str(logged), "one line a minute, never the credential"
    now[0] += FAILED_WINDOW + 1
    assert gate.failed("login token") is False, "the limit lifts"
    assert log.calls[-1].kwargs["failed"] == FAILED_LOGINS + 2
    assert gate.session(session.id) is session
    now[0] += 3600.0
    assert gate.session(session.id) is None, "a session ends at its age"


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"tls_cert": "/c.pem"}, "[console] tls_key: tls_cert and tls_key go together"),
        ({"tls_key": "/k.pem"}, "[console] tls_cert: tls_cert and tls_key go together"),
        ({"public_url": "mini.local"}, "[console] public_url: 'mini.local' is not an http(s) URL"),
        ({"public_url": "https://proxy.example/corral"}, "[console] public_url: must be a scheme and host"),
        ({"public_url": "https://proxy.example/?x=1"}, "[console] public_url: must be a scheme and host"),
    ],
)
def test_console_keys_are_checked_at_load(tmp_path: Path, table: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"console": table}, tmp_path / "corral.toml", {})
    [found] = caught.value.problems
    assert found.startswith(f"{tmp_path / 'corral.toml'}: {problem}"), found
    good = {"public_url": "https://mini.tailnet.example:8787/", "tls_cert": "/c.pem", "tls_key": "/k.pem"}
    assert parse_config({"console": good}, tmp_path / "corral.toml", {}).console.secure


@pytest.mark.parametrize(
    ("top", "agent", "section"),
    [
        ({}, {"sandbox": {"network": ["example.com:8787"]}}, "agents.scout.sandbox"),
        ({"console": {"listen": "127.0.0.1:9000"}}, {"sandbox": {"network": ["*:9000"]}}, "agents.scout.sandbox"),
        ({"sandbox": {"network": ["api.example.com:443", "example.com:8787"]}}, {}, "sandbox"),
    ],
)
def test_a_network_entry_on_the_consoles_port_is_refused_at_load(
    tmp_path: Path, top: dict[str, Any], agent: dict[str, Any], section: str
) -> None:
    """Landlock limits an agent's connections by port, not host: example.com:8787 reached the
    console at 127.0.0.1:8787."""
    data = {**top, "agents": {"scout": {"code": str(tmp_path), "entry": "a:run", **agent}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path / "corral.toml", {})
    [found] = caught.value.problems
    assert found.startswith(f"{tmp_path / 'corral.toml'}: [{section}] network: agent 'scout' is granted"), found
    assert "the console's port" in found and "[console] listen" in found
    elsewhere = {**data, "console": {"listen": "127.0.0.1:8788" if "8787" in str(data) else "127.0.0.1:9001"}}
    assert parse_config(elsewhere, tmp_path / "corral.toml", {}).agents["scout"].sandbox.endpoints
    off = {**data, "console": {**top.get("console", {}), "enabled": False}}
    assert parse_config(off, tmp_path / "corral.toml", {}).agents["scout"].sandbox.endpoints


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, authority = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(authority))
    return cert, key, authority


@pytest.mark.slow
def test_tls_serves_https_with_a_secure_cookie(
    corral_project: CorralProject, tls_files: tuple[Path, Path, Path]
) -> None:
    cert, key, authority = tls_files
    _started(corral_project, tls_cert=str(cert), tls_key=str(key))
    url, login = _console(corral_project)
    assert url.startswith("https://127.0.0.1:")
    browser = httpx.Client(
        base_url=url, verify=ssl.create_default_context(cafile=str(authority)), follow_redirects=False, timeout=10
    )
    logged_in = browser.get(login)
    assert logged_in.status_code == 303 and "secure" in logged_in.headers["set-cookie"].lower()
    assert browser.get("/").status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https://", "http://") + "/", timeout=5)


@pytest.mark.slow
def test_a_certificate_that_cannot_be_loaded_leaves_the_daemon_running(
    corral_project: CorralProject, tls_files: tuple[Path, Path, Path]
) -> None:
    cert, _, _ = tls_files
    _started(corral_project, tls_cert=str(cert), tls_key=str(cert))
    refused = corral_project.cli("console")
    assert refused.returncode != 0 and "could not listen" in refused.stderr
    assert corral_project.cli_json("run", "hello", "--wait")["state"] == "succeeded"
    log = (corral_project.home / "logs" / "corral.log").read_text()
    assert "console cannot listen" in log and "tls_cert" in log


@pytest.mark.slow
def test_an_https_public_url_names_the_links_and_secures_the_cookie(corral_project: CorralProject) -> None:
    public = "https://mini.tailnet.example"
    _started(corral_project, public_url=public)
    url, login = _console(corral_project)
    assert url == public and login.startswith(f"{public}/login?token=")
    listening = f"http://127.0.0.1:{_port(corral_project)}"
    answer = httpx.get(listening + urlsplit(login).path + "?" + urlsplit(login).query, follow_redirects=False)
    assert answer.status_code == 303 and "secure" in answer.headers["set-cookie"].lower()


def _port(project: CorralProject) -> int:
    """The port the console bound (listen port 0), from the daemon's log."""
    for line in (project.home / "logs" / "corral.log").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "console listening":
            return int(urlsplit(event["url"]).port or 0)
    raise AssertionError("the console did not log where it listens")


@pytest.mark.slow
def test_bad_input_and_bytes_that_are_not_http_leave_the_console_and_the_daemon_serving(
    corral_project: CorralProject,
) -> None:
    _started(corral_project)
    url, login = _console(corral_project)
    browser = httpx.Client(base_url=url, follow_redirects=False, timeout=10)
    browser.get(login)
    run_id = corral_project.cli_json("run", "hello", "--wait")["id"]
    csrf = browser.get(f"/runs/{run_id}").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    # a step number past Python's 4300-digit int limit: int() raised inside the route (a 500)
    refused = browser.post(f"/runs/{run_id}/fork", data={"csrf": csrf, "from": "9" * 5000})
    assert refused.status_code == 400 and "content-security-policy" in refused.headers
    with socket.create_connection(("127.0.0.1", int(urlsplit(url).port or 0)), timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01garbage that is not HTTP\r\n\r\n")
        raw.recv(100)
    assert browser.get("/").status_code == 200, "the console serves on"
    assert corral_project.cli_json("run", "hello", "--wait")["state"] == "succeeded", "and the daemon runs on"


PROBE = """
import socket
import ssl

def run(ctx):
    found = {}
    for name, port in ctx.input.items():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect(("127.0.0.1", port))
            found[name] = "reached"
        except OSError as exc:
            found[name] = f"refused: {type(exc).__name__}: {exc}"
        finally:
            s.close()
    return found
"""


@pytest.mark.slow
def test_a_sandboxed_agent_cannot_reach_the_console(corral_project: CorralProject) -> None:
    granted = socket.socket()
    granted.bind(("127.0.0.1", 0))
    granted.listen()
    try:
        port = granted.getsockname()[1]
        corral_project.tables["console"] = {"listen": "127.0.0.1:0"}
        corral_project.agent("isolated", PROBE, sandbox={"network": "none", "degraded_ok": False})
        corral_project.agent("listed", PROBE, sandbox={"network": [f"127.0.0.1:{port}"], "degraded_ok": False})
        corral_project.start_daemon()
        protections = json.loads(corral_project.cli("doctor", "--json").stdout)["machine"]["protections"]
        console = int(urlsplit(_console(corral_project)[0]).port or 0)
        ran = 0
        for agent, protection, ports in (
            ("isolated", "network", {"console": console}),
            ("listed", "tcp_ports", {"console": console, "granted": port}),
        ):
            offered = protections.get(protection) or {}
            if not offered.get("available"):
                continue  # said below, with the reason
            ran += 1
            run = corral_project.cli_json("run", agent, "--input", json.dumps(ports), "--wait")
            assert run["state"] == "succeeded", run
            assert run["result"]["console"].startswith("refused"), (agent, run["result"])
            if "granted" in ports:
                assert run["result"]["granted"].startswith("reached"), "the grant itself works"
        if ran < 2:
            missing = {p: (protections.get(p) or {}).get("reason", "not detected") for p in ("network", "tcp_ports")}
            pytest.skip(f"a protection is missing here (bubblewrap / Landlock ABI 4): {missing}")
    finally:
        granted.close()


def test_a_page_that_fails_is_a_500_naming_the_log_and_the_console_and_daemon_go_on(
    corral_project: CorralProject,
) -> None:
    """A run record the pages cannot show (its times are text, as a store edited by hand or
    written by another version might hold): the daemon starts all the same (retention keeps
    the record and says so), the pages that show it are a 500 naming the log, and the
    console and the daemon go on serving."""
    corral_project.agent("hello", HELLO)
    ran = corral_project.cli_json("run", "hello", "--wait")
    store = Store.open(corral_project.home / "store")
    records = Records(store.dbs)
    with store.env.begin(write=True) as txn:
        run = records.get_run(txn, ran["id"])
        run.update(created="yesterday", ended="today")
        records.put_run(txn, run)
    store.close()
    _started(corral_project)
    url, login = _console(corral_project)
    browser = httpx.Client(base_url=url, follow_redirects=False, timeout=10)
    assert browser.get(login).status_code == 303
    failed = browser.get(f"/runs/{ran['id']}")
    assert failed.status_code == 500, failed.text
    assert "The daemon and its agents are not affected" in failed.text and "corral.log" in failed.text
    assert "Traceback" not in failed.text and "yesterday" not in failed.text
    assert browser.get("/approvals").status_code == 200, "the other pages go on"
    again = corral_project.cli_json("run", "hello", "--wait")
    assert again["state"] == "succeeded", "the daemon goes on"
    lines = [json.loads(line) for line in (corral_project.home / "logs" / "corral.log").read_text().splitlines()]
    page_failed = [line for line in lines if line.get("event") == "console page failed"]
    assert page_failed and page_failed[0]["path"] == f"/runs/{ran['id']}" and "Traceback" in page_failed[0]["exception"]
    kept = [line for line in lines if line.get("event") == "retention kept run records it cannot read"]
    assert kept and kept[0]["runs"] == [ran["id"]]
