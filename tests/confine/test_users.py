"""Dropping a root process to an unprivileged user, in a real child process."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.sandbox import users

from .helpers.run import run_probe


def _nobody() -> users.Account:
    if os.geteuid() != 0:
        pytest.skip(f"dropping privileges needs root; the tests run as uid {os.geteuid()}")
    try:
        return users.resolve("nobody")
    except users.PrivilegeDropError as error:
        pytest.skip(f"no 'nobody' account to drop to: {error}")


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A 0755 folder: pytest's tmp_path sits under a 0700 folder, which would hide the files'
    own modes from another user."""
    with tempfile.TemporaryDirectory(prefix="corral-users-") as name:
        folder = Path(name)
        folder.chmod(0o755)
        yield folder


def test_a_child_dropped_to_nobody_cannot_read_a_root_only_file(open_folder: Path) -> None:
    nobody = _nobody()
    private, public = open_folder / "private.txt", open_folder / "public.txt"
    private.write_text("root only")
    private.chmod(0o600)
    public.write_text("for everyone")
    public.chmod(0o644)
    probes = [["read", str(private)], ["read", str(public)], ["whoami"], ["setuid", 0], ["drop", "nobody"]]

    report = run_probe({"user": "nobody", "probes": probes})

    denied, readable, whoami, regain, again = report["results"]
    assert (denied, readable) == ("EACCES", "for everyone")
    assert whoami == [nobody.uid, nobody.uid, nobody.gid, nobody.gid]
    assert regain == "EPERM"
    assert again.startswith("error: switching to 'nobody' needs root; this process runs as uid")
    assert report["applied"]["user"] == {
        "name": "nobody",
        "uid": nobody.uid,
        "gid": nobody.gid,
        "groups": list(nobody.groups),
    }
    assert users.DropApplied(**report["applied"]["user"]).labels() == ["user:nobody"]


def test_resolve_names_the_fix_for_a_missing_user() -> None:
    with pytest.raises(users.PrivilegeDropError) as caught:
        users.resolve("corral-no-such-user")

    message = str(caught.value)
    assert "there is no user named 'corral-no-such-user'" in message
    assert "useradd --system --no-create-home --shell /usr/sbin/nologin corral-no-such-user" in message


def test_resolve_refuses_root() -> None:
    with pytest.raises(users.PrivilegeDropError, match="has uid 0 \\(root\\); agents must run as an unprivileged"):
        users.resolve("root")


def test_creation_hints_per_platform() -> None:
    assert "useradd" in users.creation_hint("agent-x", platform="linux")
    mac = users.creation_hint("agent-x", platform="darwin")
    assert "sysadminctl -addUser agent-x" in mac and "dscl . -create /Users/agent-x UniqueID" in mac


def test_detect_explains_a_missing_user() -> None:
    support = users.detect("corral-no-such-user")

    assert not support.available and support.account is None
    assert "useradd" in support.reason


def test_unreachable_finds_the_folder_that_blocks_the_user(open_folder: Path) -> None:
    nobody = _nobody()
    closed = open_folder / "closed"
    closed.mkdir(mode=0o700)
    inside = closed / "lib"
    inside.mkdir()

    assert users.unreachable(nobody, [str(inside), str(open_folder)]) == [str(closed)]
    closed.chmod(0o755)
    assert users.unreachable(nobody, [str(inside)]) == []


def test_detect_checks_the_user_can_run_this_python() -> None:
    nobody = _nobody()
    support = users.detect("nobody")

    blocked = users.unreachable(nobody, users.python_paths())
    assert support.available is (not blocked)
    if blocked:
        assert f"user 'nobody' cannot read {', '.join(blocked)}, which this Python needs" in support.reason
