"""Network namespaces: a real child enters one and finds only a loopback of its own."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from corral.sandbox import netns, users

from .helpers.run import run_probe

SUPPORT = netns.detect()
pytestmark = pytest.mark.skipif(not SUPPORT.available, reason=f"network namespaces unavailable: {SUPPORT.reason}")


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener in the test's (the daemon's) namespace."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_the_child_cannot_reach_the_parents_loopback_but_has_its_own(listener: int) -> None:
    probes = [["connect", "127.0.0.1", listener], ["own_loopback"], ["interfaces"]]
    assert run_probe({"probes": probes[:1]})["results"] == ["ok"], "without a namespace the listener is reachable"

    report = run_probe({"netns": True, "probes": probes})

    assert report["results"] == ["ECONNREFUSED", "ok", ["lo"]]
    applied = report["applied"]["netns"]
    assert applied["interfaces"] == ["lo"] and applied["loopback"] == "ioctl"
    assert applied["mode"] == ("root" if os.geteuid() == 0 else "user")
    assert netns.NetnsApplied(**applied).labels() == [f"netns:{applied['mode']}"]


def test_udp_to_the_parents_loopback_never_arrives() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(0.3)
        port = receiver.getsockname()[1]
        report = run_probe({"netns": True, "probes": [["udp_send", "127.0.0.1", port]]})
        assert report["results"] == ["ok"]
        with pytest.raises(TimeoutError):
            receiver.recv(64)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user first needs root")
def test_an_unprivileged_process_gets_a_user_namespace(listener: int) -> None:
    try:
        users.resolve("nobody")
    except users.PrivilegeDropError as error:
        pytest.skip(str(error))
    probes = [["connect", "127.0.0.1", listener], ["own_loopback"], ["read", "/proc/self/status"], ["whoami"]]

    report = run_probe({"user": "nobody", "netns": True, "order": ["user", "netns"], "probes": probes})

    refused, own, status, whoami = report["results"]
    assert (refused, own) == ("ECONNREFUSED", "ok")
    assert report["applied"]["netns"]["mode"] == "user"
    assert report["applied"]["netns"]["capabilities_dropped"] is True
    capabilities = dict(line.split(":\t") for line in status.splitlines() if line.startswith(("CapEff", "CapPrm")))
    assert capabilities == {"CapEff": "0000000000000000", "CapPrm": "0000000000000000"}
    assert whoami[0] == users.resolve("nobody").uid


def test_a_process_with_threads_is_refused() -> None:
    stderr = run_probe({"thread": True, "netns": True}, expect_ok=False)["stderr"]

    assert "NetnsError" in stderr and "enter the namespace before starting any thread" in stderr


def test_detect_reports_the_mode_it_found() -> None:
    assert SUPPORT.mode in ("root", "user")
    assert SUPPORT.reason.startswith("a private network namespace with only loopback works")


def test_detect_reports_why_a_probe_failed() -> None:
    support = netns.detect(user="no-such-user-corral")

    assert not support.available and "could not start the probe process" in support.reason
