"""Landlock, applied by real child processes to themselves, then probed from inside."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.sandbox import landlock

from .helpers.run import run_probe

SUPPORT = landlock.detect()
pytestmark = pytest.mark.skipif(not SUPPORT.available, reason=f"Landlock unavailable: {SUPPORT.reason}")
DENIED = {"EACCES", "EPERM"}


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """An agent's workdir, a read-only folder, another agent's folder and a secret outside."""
    work, shared, other = tmp_path / "work", tmp_path / "shared", tmp_path / "other-agent"
    for folder in (work, shared, other):
        folder.mkdir()
    (shared / "readme.txt").write_text("shared text")
    (other / "notes.txt").write_text("other agent's notes")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside secret")
    (work / "escape").symlink_to(secret)
    (work / "mine.txt").write_text("my file")
    return {"work": work, "shared": shared, "other": other, "secret": secret}


def _spec(tree: dict[str, Path], **extra: Any) -> dict[str, Any]:
    rw, ro = landlock.system_paths()
    return {
        "read_write": [*rw, str(tree["work"])],
        "read_only": [*ro, str(tree["shared"]), str(tree["work"].parent / "does-not-exist")],
        **extra,
    }


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_filesystem_access_is_limited_to_the_granted_paths(tree: dict[str, Path]) -> None:
    work, shared, other, secret = tree["work"], tree["shared"], tree["other"], tree["secret"]
    probes = [
        ["read", str(work / "mine.txt")],
        ["write", str(work / "new.txt")],
        ["read", str(shared / "readme.txt")],
        ["read", str(secret)],
        ["read", str(other / "notes.txt")],
        ["listdir", str(other)],
        ["write", str(work.parent / "planted.txt")],
        ["write", str(shared / "planted.txt")],
        ["read", str(work / "escape")],
        ["link", str(secret), str(work / "hardlink")],
        ["rename", str(work / "mine.txt"), str(other / "stolen.txt")],
        ["read", "/proc/1/environ"],
    ]
    control = run_probe({"probes": probes[3:4]})
    assert control["results"] == ["outside secret"], "without Landlock the probe must be able to read it"

    report = run_probe({"landlock": _spec(tree), "probes": probes})

    results = dict(zip([" ".join(p) for p in probes], report["results"], strict=True))
    allowed = list(results.values())[:3]
    assert allowed == ["my file", "ok", "shared text"]
    assert (work / "new.txt").read_text() == "written by the probe"
    for probe, outcome in list(results.items())[3:]:
        assert outcome in DENIED | {"EXDEV"}, f"{probe} was not denied: {outcome}"
    assert not (work.parent / "planted.txt").exists() and not (shared / "planted.txt").exists()
    assert not (other / "stolen.txt").exists() and (work / "mine.txt").exists()


def test_what_was_applied_is_reported_and_missing_paths_are_noted(tree: dict[str, Path]) -> None:
    report = run_probe({"landlock": _spec(tree, tcp_connect=[], tcp_bind=[])})

    applied = report["applied"]["landlock"]
    assert applied["abi"] == SUPPORT.abi
    assert {"read_file", "write_file", "execute", "read_dir", "make_reg"} <= set(applied["handled_fs"])
    assert str(tree["work"]) in applied["read_write"] and str(tree["shared"]) in applied["read_only"]
    missing = str(tree["work"].parent / "does-not-exist")
    assert missing not in applied["read_only"]
    assert f"skipped {missing}: it does not exist" in applied["notes"]
    labels = landlock.LandlockApplied(**applied).labels()
    assert labels[:2] == [f"landlock:abi{SUPPORT.abi}", "landlock:fs"]
    if SUPPORT.abi >= 4:
        assert applied["handled_net"] == ["bind_tcp", "connect_tcp"] and "landlock:tcp" in labels
    if SUPPORT.abi >= 6:
        assert applied["scopes"] == ["abstract_unix_socket", "signal"]
        assert labels[-2:] == ["landlock:scope:abstract_unix_socket", "landlock:scope:signal"]


@pytest.mark.skipif(SUPPORT.abi < 4, reason=f"TCP rules need Landlock ABI 4; this kernel has {SUPPORT.abi}")
def test_tcp_connect_and_bind_only_to_listed_ports(tree: dict[str, Path], listener: socket.socket) -> None:
    allowed_port = listener.getsockname()[1]
    with socket.socket() as other_listener:
        other_listener.bind(("127.0.0.1", 0))
        other_listener.listen()
        other_port = other_listener.getsockname()[1]
        bind_ok, bind_denied = _free_port(), _free_port()
        probes = [
            ["connect", "127.0.0.1", allowed_port],
            ["connect", "127.0.0.1", other_port],
            ["bind", "127.0.0.1", bind_ok],
            ["bind", "127.0.0.1", bind_denied],
        ]
        assert run_probe({"probes": probes})["results"] == ["ok"] * 4, "without Landlock all four must work"

        spec = _spec(tree, tcp_connect=[allowed_port], tcp_bind=[bind_ok])
        report = run_probe({"landlock": spec, "probes": probes})

    assert report["results"] == ["ok", "EACCES", "ok", "EACCES"]
    assert report["applied"]["landlock"]["tcp_connect"] == [allowed_port]


@pytest.mark.skipif(SUPPORT.abi < 4, reason=f"TCP rules need Landlock ABI 4; this kernel has {SUPPORT.abi}")
def test_unrestricted_tcp_stays_open_when_no_ports_are_given(tree: dict[str, Path], listener: socket.socket) -> None:
    report = run_probe({"landlock": _spec(tree), "probes": [["connect", "127.0.0.1", listener.getsockname()[1]]]})

    assert report["results"] == ["ok"]
    assert report["applied"]["landlock"]["handled_net"] == []


@pytest.mark.skipif(SUPPORT.abi < 6, reason=f"scopes need Landlock ABI 6; this kernel has {SUPPORT.abi}")
def test_signals_and_abstract_sockets_outside_the_domain_are_denied(tree: dict[str, Path]) -> None:
    name = f"corral-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen()
        victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            report = run_probe({"landlock": _spec(tree), "probes": [["kill", victim.pid], ["abstract", name]]})
            assert victim.poll() is None, "the confined child must not be able to signal an outside process"
            assert run_probe({"probes": [["abstract", name]]})["results"] == ["ok"]
        finally:
            victim.kill()
            victim.wait()

    assert report["results"] == ["EPERM", "EPERM"]


def test_scopes_can_be_left_out(tree: dict[str, Path]) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        report = run_probe({"landlock": _spec(tree, scopes=[]), "probes": [["kill", victim.pid]]})
        assert victim.wait(timeout=10) != 0
    finally:
        victim.kill()

    assert report["results"] == ["ok"]
    assert report["applied"]["landlock"]["scopes"] == []


def test_a_process_with_threads_is_refused(tree: dict[str, Path]) -> None:
    stderr = run_probe({"thread": True, "landlock": _spec(tree)}, expect_ok=False)["stderr"]

    assert "LandlockError" in stderr and "apply it before starting any thread" in stderr


def test_restriction_is_inherited_by_children(tree: dict[str, Path]) -> None:
    probes = [["spawn_read", str(tree["secret"])], ["spawn_read", str(tree["work"] / "mine.txt")]]
    report = run_probe({"landlock": _spec(tree), "probes": probes})

    assert report["results"] == ["PermissionError", "ok"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tcp_connect": [70000]}, "tcp_connect port 70000 is not a TCP port number"),
        ({"tcp_bind": ["80"]}, "tcp_bind port '80' is not a TCP port number"),
        ({"tcp_connect": [True]}, "is not a TCP port number"),
        ({"scopes": ["signals"]}, "unknown Landlock scope 'signals'; use any of abstract_unix_socket, signal"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_applied(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(landlock.LandlockError, match=message):
        landlock.apply(["/nonexistent"], **kwargs)


def test_rights_are_masked_to_the_abi() -> None:
    assert landlock._names(landlock.FS_RIGHTS, landlock._mask(landlock.FS_RIGHTS, 1))[-1] == "make_sym"
    assert "refer" in landlock._names(landlock.FS_RIGHTS, landlock._mask(landlock.FS_RIGHTS, 2))
    assert "truncate" not in landlock._names(landlock.FS_RIGHTS, landlock._mask(landlock.FS_RIGHTS, 2))
    assert "ioctl_dev" in landlock._names(landlock.FS_RIGHTS, landlock._mask(landlock.FS_RIGHTS, 5))
    notes: list[str] = []
    assert landlock._handled_net(3, (443,), None, notes) == 0
    assert notes == ["TCP ports are not restricted: Landlock network rules need ABI 4, this kernel has 3"]
    assert landlock._scoped(5, ("signal",), notes) == 0 and "need ABI 6, this kernel has 5" in notes[-1]
    assert landlock._handled_net(4, None, (), []) == 1  # bind only


def test_detect_describes_what_the_kernel_offers() -> None:
    assert SUPPORT.abi >= 1
    assert SUPPORT.reason.startswith(f"Landlock ABI {SUPPORT.abi}: filesystem rules")
