"""The Seatbelt profile generator: structure, quoting and network modes, read back with an SBPL reader.

Whether macOS accepts and enforces the profile can only be seen on a Mac; the last test
does that where ``sandbox-exec`` works and skips elsewhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.sandbox import seatbelt

from .helpers.sbpl import Form, String, parse

PYTHON = "/opt/python/bin/python3"


def _profile(**kwargs: Any) -> list[Form]:
    args: dict[str, Any] = {"python_executable": PYTHON, "python_paths": ["/opt/python"], **kwargs}
    return parse(seatbelt.generate(**args))


def _rules(forms: list[Form], head: str) -> list[list[Form]]:
    """Every top-level ``(head operation ...)`` form."""
    return [f for f in forms if isinstance(f, list) and f and f[0] == head]


def _filters(forms: list[Form], operation: str, kind: str) -> list[str]:
    """The strings of every ``(kind "...")`` filter of the allow rules naming ``operation``."""
    found = []
    for rule in _rules(forms, "allow"):
        if operation in rule:
            for item in rule:
                if isinstance(item, list) and item[0] == kind and isinstance(item[1], String):
                    found.append(item[1].value)
    return found


def test_profile_denies_by_default_then_allows() -> None:
    forms = _profile()

    assert forms[:2] == [["version", "1"], ["deny", "default"]]
    assert all(f[0] in ("allow", "version", "deny") for f in forms if isinstance(f, list))
    assert ["allow", "default"] not in forms
    assert _rules(forms, "deny") == [["deny", "default"]]
    assert ["allow", "sysctl-read"] in forms
    assert ["allow", "signal", ["target", "self"]] in forms


def test_system_python_and_device_paths_are_readable_and_only_dev_null_writable() -> None:
    forms = _profile()

    readable = _filters(forms, "file-read*", "subpath")
    for path in ("/usr/lib", "/System", "/Library/Frameworks", "/private/var/db/timezone", "/opt/python"):
        assert path in readable
    assert {"/dev/null", "/dev/urandom"} <= set(_filters(forms, "file-read*", "literal"))
    assert _filters(forms, "file-write*", "literal") == ["/dev/null"]
    assert _filters(forms, "file-write*", "subpath") == []
    assert _filters(forms, "process-exec", "literal") == [PYTHON]
    assert {"com.apple.system.opendirectoryd.libinfo"} <= set(_filters(forms, "mach-lookup", "global-name"))


def test_writes_only_under_the_read_write_paths(tmp_path: Path) -> None:
    work, shared = tmp_path / "work", tmp_path / "shared"
    forms = _profile(read_write=[str(work)], read_only=[str(shared)])

    assert _filters(forms, "file-write*", "subpath") == [str(work)]
    assert str(shared) in _filters(forms, "file-read*", "subpath")
    assert str(shared) not in _filters(forms, "file-write*", "subpath")
    metadata = _filters(forms, "file-read-metadata", "literal")
    assert "/" in metadata and str(tmp_path) in metadata


def test_paths_are_resolved_because_seatbelt_matches_real_paths(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)

    forms = _profile(read_write=[str(tmp_path / "alias")])

    assert _filters(forms, "file-write*", "subpath") == [str(real)]


@pytest.mark.parametrize(
    "name",
    [
        'quote"inside',
        "back\\slash",
        'end\\", (allow default) "',
        "\\\\double",
        'x")(allow file-write* (subpath "/")',
    ],
)
def test_quotes_and_backslashes_cannot_break_out_of_the_string(tmp_path: Path, name: str) -> None:
    hostile = str(tmp_path / name)

    forms = _profile(read_write=[hostile])

    assert _filters(forms, "file-write*", "subpath") == [hostile]
    assert ["allow", "default"] not in forms
    assert len(_rules(forms, "allow")) == len(_rules(_profile(read_write=[str(tmp_path / "plain")]), "allow"))


@pytest.mark.parametrize("bad", ["/tmp/new\nline", "/tmp/tab\there", "/tmp/del\x7f"])
def test_control_characters_are_refused(bad: str) -> None:
    with pytest.raises(seatbelt.SeatbeltError, match="contains the control character"):
        seatbelt.generate(python_executable=PYTHON, python_paths=[], read_write=[bad])


@pytest.mark.parametrize(("path", "message"), [("relative/dir", "is relative"), ("", "is empty"), ("/a\0b", "NUL")])
def test_relative_empty_and_nul_paths_are_refused(path: str, message: str) -> None:
    with pytest.raises(seatbelt.SeatbeltError, match=message):
        seatbelt.generate(python_executable=PYTHON, python_paths=[], read_only=[path])


def test_network_none_allows_no_network_at_all() -> None:
    text = seatbelt.generate(python_executable=PYTHON, python_paths=[], network="none")

    assert "network" not in text
    assert "mDNSResponder" not in text


def test_network_all_allows_every_network_operation_and_name_resolution() -> None:
    forms = _profile(network="all")

    assert ["allow", "network*"] in forms
    assert seatbelt.MDNS_SOCKET in _filters(forms, "network-outbound", "literal")
    assert "com.apple.SystemConfiguration.configd" in _filters(forms, "mach-lookup", "global-name")


def test_network_list_allows_outbound_tcp_to_each_entry() -> None:
    forms = _profile(network=["*:443", "localhost:8080"])

    remote = [
        r for r in _rules(forms, "allow") if r[1] == "network-outbound" and isinstance(r[2], list) and "remote" in r[2]
    ]
    assert remote == [
        ["allow", "network-outbound", ["remote", "tcp", String("*:443")]],
        ["allow", "network-outbound", ["remote", "tcp", String("localhost:8080")]],
    ]
    assert ["allow", "network*"] not in forms
    assert seatbelt.MDNS_SOCKET in _filters(forms, "network-outbound", "literal")


def test_network_list_of_localhost_only_needs_no_name_resolution() -> None:
    text = seatbelt.generate(python_executable=PYTHON, python_paths=[], network=["localhost:5432"])

    assert '(remote tcp "localhost:5432")' in text and "mDNSResponder" not in text


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (["api.example.com:443"], "Seatbelt filters TCP by port and knows only the hosts"),
        (["127.0.0.1:80"], "write '\\*:443' or 'localhost:8080'"),
        (["*:0"], "has no valid port"),
        (["*:https"], "has no valid port"),
        (["localhost"], "is not valid on macOS"),
        ("some", "network 'some' is not valid; use 'none', 'all' or a list"),
    ],
)
def test_bad_network_entries_are_refused_with_the_fix(network: Any, message: str) -> None:
    with pytest.raises(seatbelt.SeatbeltError, match=message):
        seatbelt.generate(python_executable=PYTHON, python_paths=[], network=network)


def test_fork_is_allowed_only_when_asked() -> None:
    assert ["allow", "process-fork"] not in _profile(allow_fork=False)
    assert ["allow", "process-fork"] in _profile(allow_fork=True)


def test_the_python_executable_must_be_absolute() -> None:
    with pytest.raises(seatbelt.SeatbeltError, match="python_executable path 'python3' is relative"):
        seatbelt.generate(python_executable="python3", python_paths=[])


def test_command_runs_python_under_the_profile() -> None:
    argv = seatbelt.command("(version 1)", PYTHON, ["-I", "-m", "corral.sandbox.launcher", "{}"])

    assert argv == ["/usr/bin/sandbox-exec", "-p", "(version 1)", PYTHON, "-I", "-m", "corral.sandbox.launcher", "{}"]


def test_detect_says_why_not_off_macos() -> None:
    support = seatbelt.detect()

    if sys.platform != "darwin":
        assert not support.available
        assert support.reason == f"Seatbelt is a macOS feature; this machine runs {sys.platform}"


def test_a_generated_profile_confines_python_on_a_mac(tmp_path: Path) -> None:
    support = seatbelt.detect()
    if not support.available:
        pytest.skip(f"Seatbelt unavailable: {support.reason}")
    work, outside = tmp_path / "work", tmp_path / "outside.txt"
    work.mkdir()
    outside.write_text("outside")
    profile = seatbelt.generate(
        python_executable=sys.executable, python_paths=[sys.prefix, sys.base_prefix], read_write=[str(work)]
    )
    code = (
        f"open({str(work / 'ok.txt')!r}, 'w').write('x')\n"
        f"try:\n    open({str(outside)!r}).read()\nexcept PermissionError:\n    print('denied')\n"
    )

    result = subprocess.run(
        seatbelt.command(profile, sys.executable, ["-I", "-c", code]), capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "denied" and (work / "ok.txt").read_text() == "x"
