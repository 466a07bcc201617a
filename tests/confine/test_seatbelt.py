"""The Seatbelt profile against a hostile agent: one test per escape, read back with an SBPL reader.

Each escape of issue 13 that Seatbelt can express has a test asserting the exact rules
that close it, for network none, a port list and all, with and without a user, with
read-only and read-write grants. Whether macOS accepts and enforces the profile can only
be seen on a Mac; the last test does that where ``sandbox-exec`` works and skips
elsewhere (docs/sandbox.md has the checklist to run there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.sandbox import macos_backend, seatbelt
from corral.sandbox.backend import ALWAYS, Confinement, Plan, Protection
from corral.sandbox.macos_backend import MacBackend, daemon_sockets
from corral.sandbox.spec import HostPort

from .helpers.sbpl import Form, String, parse

PYTHON = "/opt/python/bin/python3"
HOME = "/srv/corral"
WORKDIR = f"{HOME}/agents/fetcher"
CONTROL = f"{HOME}/corral.sock"
SUPERVISOR = f"{HOME}/supervisor/supervisor.sock"
NETWORKS: list[Any] = ["none", ["*:443", "localhost:8080"], "all"]


def _text(**kwargs: Any) -> str:
    args: dict[str, Any] = {"python_executable": PYTHON, "python_paths": ["/opt/python"], **kwargs}
    return seatbelt.generate(**args)


def _profile(**kwargs: Any) -> list[Form]:
    return parse(_text(**kwargs))


def _agent(network: Any = "none", **kwargs: Any) -> list[Form]:
    """The profile macos_backend asks for: the workdir writable and the only place for Unix sockets."""
    args: dict[str, Any] = {
        "read_write": [WORKDIR],
        "network": network,
        "allow_fork": True,
        "unix_sockets": [WORKDIR],
        "daemon_sockets": [CONTROL, SUPERVISOR],
        **kwargs,
    }
    return _profile(**args)


def balanced(text: str) -> bool:
    """Whether every parenthesis of an SBPL text closes, outside strings, ``#"regex"`` literals and comments."""
    depth, i = 0, 0
    while i < len(text):
        char = text[i]
        if char == ";":
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
        elif char == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            if i >= len(text):
                return False
        elif char in "()":
            depth += 1 if char == "(" else -1
            if depth < 0:
                return False
        i += 1
    return depth == 0


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


def _matching(forms: list[Form], action: str, operation: str) -> list[list[Form]]:
    """Every top-level ``(action ... operation ...)`` rule, filters included."""
    return [f for f in _rules(forms, action) if operation in f[1:] and all(isinstance(x, str) for x in f[:2])]


def _remote_unix(forms: list[Form], action: str) -> list[str]:
    """The paths of every ``(remote unix-socket (KIND PATH))`` filter in ``action network-outbound`` rules."""
    found = []
    for rule in _matching(forms, action, "network-outbound"):
        for item in rule:
            if isinstance(item, list) and item[:2] == ["remote", "unix-socket"] and len(item) == 3:
                kind = item[2]
                assert isinstance(kind, list) and isinstance(kind[1], String)
                found.append(f"{kind[0]} {kind[1].value}")
    return found


@pytest.mark.parametrize("user", [None, "nobody"])
@pytest.mark.parametrize("network", NETWORKS, ids=["none", "list", "all"])
def test_every_profile_is_balanced_s_expressions(tmp_path: Path, network: Any, user: str | None) -> None:
    plan = MacBackend().plan(_request(tmp_path, network=_net(network), user=user), _offered(user))
    text = plan.wrap[2]

    assert balanced(text)
    assert parse(text)
    assert not balanced(text + ")") and not balanced("(" + text) and not balanced('(allow "x)')


def test_profile_denies_by_default_then_denies_what_default_may_not_cover() -> None:
    forms = _agent()

    assert forms[:2] == [["version", "1"], ["deny", "default"]]
    assert ["deny", "process-info*"] in forms
    assert ["if", ["defined?", "'nvram*"], ["deny", "nvram*"]] in forms
    assert ["if", ["defined?", "'iokit-get-properties"], ["deny", "iokit-get-properties"]] in forms
    assert ["allow", "default"] not in forms
    assert forms.index(["deny", "process-info*"]) < forms.index(["allow", "process-info*", ["target", "same-sandbox"]])


@pytest.mark.parametrize("network", NETWORKS, ids=["none", "list", "all"])
def test_no_unix_socket_outside_the_workdir_and_the_daemon_sockets_denied_last(network: Any) -> None:
    forms = _agent(network)

    allowed = _remote_unix(forms, "allow")
    expected = [f"subpath {WORKDIR}"] + ([f"path-literal {seatbelt.MDNS_SOCKET}"] if network != "none" else [])
    assert allowed == expected
    assert forms[-1] == [
        "deny",
        "network-outbound",
        ["remote", "unix-socket", ["path-literal", String(CONTROL)]],
        ["remote", "unix-socket", ["path-literal", String(SUPERVISOR)]],
    ], "the last rule wins: no grant can reopen the control socket or supervisord's"
    assert ["allow", "network*"] not in forms and ["allow", "network-outbound"] not in forms
    for rule in _matching(forms, "allow", "network-outbound"):
        assert all(isinstance(f, list) and f[0] == "remote" and f[1] != "ip" for f in rule[2:]), rule


def test_the_workdirs_own_unix_sockets_can_be_bound_and_connected() -> None:
    forms = _agent(read_only=["/srv/reference"], read_write=[WORKDIR, "/srv/outbox"])

    assert ["allow", "system-socket", ["socket-domain", "AF_UNIX"]] in forms
    assert ["allow", "network-bind", "network-inbound", ["local", "unix-socket", ["subpath", String(WORKDIR)]]] in forms
    assert ["allow", "network-outbound", ["remote", "unix-socket", ["subpath", String(WORKDIR)]]] in forms
    assert "/srv/outbox" not in str(_matching(forms, "allow", "network-outbound")), (
        "a read-write grant is no socket dir"
    )
    assert len(_matching(forms, "allow", "network-bind")) == 1


def test_a_profile_without_socket_folders_allows_no_unix_socket_at_all() -> None:
    forms = _profile(read_write=[WORKDIR], network="none")

    assert _remote_unix(forms, "allow") == [] and _matching(forms, "allow", "network-bind") == []


def test_daemon_sockets_are_found_under_the_home() -> None:
    assert daemon_sockets(str(Path(WORKDIR).parent.parent)) == [CONTROL, SUPERVISOR]
    assert daemon_sockets(None) == []


@pytest.mark.parametrize("network", NETWORKS, ids=["none", "list", "all"])
def test_no_raw_route_or_kernel_control_socket_even_with_a_network_grant(network: Any) -> None:
    forms = _agent(network)

    assert _matching(forms, "allow", "system-socket") == [["allow", "system-socket", ["socket-domain", "AF_UNIX"]]]
    assert not any("/dev/bpf" in str(rule) for rule in _rules(forms, "allow")), "packet capture is /dev/bpf on macOS"


def test_network_none_allows_no_network_at_all() -> None:
    text = _text(network="none")

    assert "network-outbound (remote tcp" not in text and "(local tcp" not in text
    assert "mDNSResponder" not in text and "com.apple.dnssd.service" not in text


def test_network_list_allows_outbound_tcp_to_each_entry_and_name_resolution() -> None:
    forms = _agent(["*:443", "localhost:8080"])

    remote = [r for r in _matching(forms, "allow", "network-outbound") if "tcp" in str(r)]
    assert remote == [
        ["allow", "network-outbound", ["remote", "tcp", String("*:443")]],
        ["allow", "network-outbound", ["remote", "tcp", String("localhost:8080")]],
    ]
    assert _matching(forms, "allow", "network-bind") == [
        ["allow", "network-bind", "network-inbound", ["local", "unix-socket", ["subpath", String(WORKDIR)]]]
    ], "a port list binds nothing but the workdir's sockets"
    assert "com.apple.dnssd.service" in _filters(forms, "mach-lookup", "global-name")


def test_network_list_of_localhost_only_needs_no_name_resolution() -> None:
    text = _text(network=["localhost:5432"])

    assert '(remote tcp "localhost:5432")' in text and "mDNSResponder" not in text


def test_network_all_is_tcp_and_udp_never_network_star() -> None:
    forms = _agent("all")

    assert ["allow", "network-outbound", ["remote", "tcp"], ["remote", "udp"]] in forms
    assert ["allow", "network-bind", "network-inbound", ["local", "tcp"], ["local", "udp"]] in forms
    assert ["allow", "network*"] not in forms
    assert set(_filters(forms, "mach-lookup", "global-name")) == {
        *seatbelt.MACH_SERVICES,
        *seatbelt.NETWORK_MACH_SERVICES,
    }


def test_other_processes_cannot_be_seen_signalled_traced_or_reniced() -> None:
    forms = _agent()

    assert _matching(forms, "allow", "signal") == [["allow", "signal", ["target", "same-sandbox"]]]
    assert _matching(forms, "allow", "process-info*") == [["allow", "process-info*", ["target", "same-sandbox"]]]
    text = _text(read_write=[WORKDIR], allow_fork=True)
    for operation in ("mach-priv", "mach-task", "process-info-", "(allow signal)", "mach-host", "system-sched"):
        assert operation not in text
    assert "kern.proc" not in text, "the process table stays hidden from sysctl too"


def test_only_this_python_and_system_programs_without_setid_bits_run() -> None:
    forms = _agent()

    assert _filters(forms, "process-exec", "literal") == [PYTHON]
    assert _filters(forms, "process-exec", "subpath") == ["/bin", "/usr/bin"]
    assert ["deny", "process-exec", ["file-mode", "#o4000"], ["file-mode", "#o2000"]] in forms
    deny = forms.index(["deny", "process-exec", ["file-mode", "#o4000"], ["file-mode", "#o2000"]])
    assert all(forms.index(rule) < deny for rule in _matching(forms, "allow", "process-exec"))


def test_a_command_agents_code_and_read_only_grants_hold_programs_that_may_run() -> None:
    forms = _agent(programs=["/Users/me/agents/digest", "/opt/homebrew"], read_only=["/opt/homebrew"])

    assert _filters(forms, "process-exec", "subpath") == [
        "/bin",
        "/usr/bin",
        "/Users/me/agents/digest",
        "/opt/homebrew",
    ]
    deny = forms.index(["deny", "process-exec", ["file-mode", "#o4000"], ["file-mode", "#o2000"]])
    assert all(forms.index(rule) < deny for rule in _matching(forms, "allow", "process-exec"))


def test_fork_is_allowed_only_when_asked() -> None:
    assert ["allow", "process-fork"] not in _profile(allow_fork=False)
    assert ["allow", "process-fork"] in _profile(allow_fork=True)


def test_metadata_and_device_nodes_outside_the_workdir_cannot_be_changed() -> None:
    forms = _agent(read_only=["/srv/reference"])

    writes = [r for r in _rules(forms, "allow") if any(isinstance(o, str) and o.startswith("file-write") for o in r)]
    assert writes == [
        ["allow", "file-write-data", ["literal", String("/dev/null")]],
        ["allow", "file-read*", "file-write*", ["subpath", String(WORKDIR)]],
    ], "file-write* (mode, owner, xattr, times, flags, create, unlink) only in the workdir; /dev/null data only"
    assert ["deny", "file-write-setugid"] in forms
    assert ["deny", "file-write-create", ["vnode-type", "BLOCK-DEVICE"], ["vnode-type", "CHARACTER-DEVICE"]] in forms
    assert "file-mknod" not in str(_rules(forms, "allow")) and "file-link" not in str(_rules(forms, "allow"))
    assert ["if", ["defined?", "'file-link"], ["deny", "file-link"]] in forms, (
        "no hard link to a file or socket outside"
    )


def test_no_keychain_kernel_log_or_other_mach_service_without_a_network_grant() -> None:
    forms = _agent()

    assert _filters(forms, "mach-lookup", "global-name") == ["com.apple.system.opendirectoryd.libinfo"]
    text = _text(read_write=[WORKDIR])
    for service in ("Security", "securityd", "logd", "system.logger", "diagnosticd", "notification_center"):
        assert service not in text
    for path in ("/dev/klog", "/private/var/db/diagnostics", "Keychains", "/dev/bpf"):
        assert path not in text
    assert "kern.msgbuf" not in text


def test_sysctl_is_read_by_name_only_and_never_written() -> None:
    forms = _agent()

    assert ["allow", "sysctl-read"] not in forms and _matching(forms, "allow", "sysctl-write") == []
    assert ["deny", "sysctl-write"] in forms
    (read,) = _matching(forms, "allow", "sysctl-read")
    kinds = {f[0] for f in read[2:] if isinstance(f, list)}
    assert kinds == {"sysctl-name", "sysctl-name-prefix"}
    names = _filters(forms, "sysctl-read", "sysctl-name") + _filters(forms, "sysctl-read", "sysctl-name-prefix")
    assert "kern.hostname" in names, "uname() reads it: the host's name is readable, never writable"
    for leak in ("kern.proc", "kern.msgbuf", "kern.bootargs", "net.", "kern.boottime", "vm."):
        assert not any(n.startswith(leak) for n in names), leak


def test_ipc_is_multiprocessing_semaphores_only() -> None:
    forms = _agent()

    assert _matching(forms, "allow", "ipc-posix-sem") == [
        ["allow", "ipc-posix-sem", ["ipc-posix-name-regex", "#", String("^/?mp-")]]
    ]
    text = _text(read_write=[WORKDIR], allow_fork=True)
    assert "ipc-posix-shm" not in text and "ipc-sysv" not in text and "ipc-posix*" not in text
    assert "ipc-posix-sem" not in _text(allow_fork=False)


def test_files_outside_the_grants_cannot_be_watched() -> None:
    text = _text(read_write=[WORKDIR], network="all")

    assert "/dev/fsevents" not in text and "com.apple.FSEvents" not in text
    forms = parse(text)
    metadata = _filters(forms, "file-read-metadata", "literal")
    assert all(os.path.commonpath([p, WORKDIR]) == p for p in metadata if p.startswith(HOME)), "only folders above"


def test_system_python_and_device_paths_are_readable() -> None:
    forms = _profile()

    readable = _filters(forms, "file-read*", "subpath")
    for path in ("/usr/lib", "/System", "/Library/Frameworks", "/private/var/db/timezone", "/opt/python"):
        assert path in readable
    assert {"/dev/null", "/dev/urandom"} <= set(_filters(forms, "file-read*", "literal"))
    assert "/dev/fd" in readable
    assert {"/etc", "/tmp", "/var"} <= set(_filters(forms, "file-read-metadata", "literal")), "links into /private"
    assert not any(p.startswith(("/opt/homebrew/var", "/usr/local/var")) for p in readable)
    assert "/opt/homebrew/etc" not in readable and "/opt/homebrew/etc/openssl@3" in readable


def test_writes_only_under_the_read_write_paths(tmp_path: Path) -> None:
    work, shared = tmp_path / "work", tmp_path / "shared"
    forms = _profile(read_write=[str(work)], read_only=[str(shared)])

    assert _filters(forms, "file-write*", "subpath") == [str(work)]
    assert str(shared) in _filters(forms, "file-read*", "subpath")
    assert str(shared) not in _filters(forms, "file-write*", "subpath")
    metadata = _filters(forms, "file-read-metadata", "literal")
    assert "/" in metadata and str(tmp_path) in metadata


def _any_door_port(plan: Plan) -> list[str]:
    """The plan's wrapper with its door port (free when it was planned) written as PORT."""
    return [part.replace(f"localhost:{plan.spec['door_port']}", "localhost:PORT") for part in plan.wrap]


@pytest.mark.parametrize("network", NETWORKS, ids=["none", "list", "all"])
def test_a_user_changes_the_spec_not_the_profile(searchable: Path, network: Any) -> None:
    alone = MacBackend().plan(_request(searchable, network=_net(network)), _offered(None))
    dropped = MacBackend().plan(_request(searchable, network=_net(network), user="nobody"), _offered("nobody"))

    assert _any_door_port(dropped) == _any_door_port(alone), "each plan picks a free door port; nothing else differs"
    assert dropped.spec["user"]["name"] == "nobody" and "user" not in alone.spec
    assert dropped.spec["processes_in_use"] >= 0 and alone.spec["processes_in_use"] >= 1
    assert not dropped.missing and not alone.missing


def test_a_user_that_cannot_reach_its_workdir_is_refused_before_it_starts(tmp_path: Path) -> None:
    home = tmp_path / "private-home"
    (home / "agents").mkdir(parents=True)
    home.chmod(0o700)

    plan = MacBackend().plan(_request(tmp_path, workdir=home / "agents" / "fetcher", user="nobody"), _offered("nobody"))

    (refusal,) = [m for m in plan.missing if m.startswith("user:")]
    assert "'nobody' cannot reach" in refusal and "chmod o+x" in refusal
    assert plan.account is None and "user" not in plan.spec


def test_a_root_daemon_without_user_is_missing_privileges(tmp_path: Path, searchable: Path) -> None:
    offered = {**_offered(None), "privileges": Protection("privileges", False, "", "the daemon runs as root")}

    plan = MacBackend().plan(_request(tmp_path), offered)
    with_user = MacBackend().plan(_request(searchable, user="nobody"), {**offered, **_offered("nobody")})

    assert plan.missing == ["privileges: the daemon runs as root"]
    assert with_user.missing == []


@pytest.mark.parametrize(("euid", "available"), [(0, False), (501, True)])
def test_privileges_are_missing_only_under_a_root_daemon(
    monkeypatch: pytest.MonkeyPatch, euid: int, available: bool
) -> None:
    monkeypatch.setattr(macos_backend.os, "geteuid", lambda: euid)

    found = macos_backend._privileges(seatbelt.SeatbeltSupport(True, "applies profiles"))

    assert found.available is available
    assert ("would run as root" in found.reason) is not available and "corral-agent" not in found.reason


def test_every_protection_a_policy_asks_for_is_planned(tmp_path: Path) -> None:
    gone = {n: Protection(n, False, "", f"{n} is not here") for n in _offered(None)}

    plan = MacBackend().plan(_request(tmp_path), gone)

    assert {m.split(":")[0] for m in plan.missing} == {*ALWAYS, "network"}
    assert not plan.wrap and plan.spec["seatbelt"] is False


def _net(network: Any) -> str:
    return network if isinstance(network, str) else "list"


@pytest.fixture
def searchable() -> Iterator[Path]:
    """A folder every user may pass through, as the path to a dropped user's workdir must be on macOS."""
    folder = Path(tempfile.mkdtemp(prefix="corral-seatbelt-", dir="/tmp"))
    (folder / "home" / "agents").mkdir(parents=True)
    for step in (folder, folder / "home", folder / "home" / "agents"):
        step.chmod(0o711)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _request(tmp_path: Path, **changes: Any) -> Confinement:
    workdir = changes.pop("workdir", tmp_path / "home" / "agents" / "fetcher")
    values: dict[str, Any] = {
        "agent": "fetcher",
        "workdir": workdir,
        "read_write": (str(workdir),),
        "read_only": ("/usr", "/srv/reference"),
        "network": "none",
        "endpoints": (HostPort("*", 443), HostPort("localhost", 8080)),
        "user": None,
        "degraded_ok": False,
        "python": sys.executable,
        "home": str(workdir.parent.parent),
        **changes,
    }
    return Confinement(**values)


def _offered(user: str | None) -> dict[str, Protection]:
    names = (*ALWAYS, "network", "tcp_ports")
    offered = {name: Protection(name, True, "seatbelt", f"{name} works") for name in names}
    if user:
        offered[f"user:{user}"] = Protection(f"user:{user}", True, f"user:{user}", "works")
    return offered


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


@pytest.mark.parametrize("network", NETWORKS)
def test_the_model_door_is_the_one_local_port_the_profile_opens(network: Any) -> None:
    """An agent granted models binds, accepts and connects on its door's loopback port; the
    profile opens that one port, whatever the network policy, and no other local one."""
    forms = _agent(network, door_port=48123)
    door = String("localhost:48123")
    assert ["allow", "network-bind", "network-inbound", ["local", "tcp", door]] in forms
    assert ["allow", "network-outbound", ["remote", "tcp", door]] in forms
    without = _agent(network)
    added = [form for form in forms if form not in without]
    assert len(added) == 2, "the door adds its two rules and nothing else"
    assert balanced(_text(door_port=48123, network=network))
    if network == "none":
        binds = [form for form in forms if form[:2] == ["allow", "network-bind"]]
        assert all("unix-socket" in str(form) or door in form[-1] for form in binds)


@pytest.mark.parametrize("port", [0, 70000, -1, True, "8080"])
def test_a_bad_door_port_is_refused(port: Any) -> None:
    with pytest.raises(seatbelt.SeatbeltError, match="door port"):
        _text(door_port=port)


def test_every_plan_names_its_door_port_in_profile_and_spec(tmp_path: Path) -> None:
    plan = MacBackend().plan(_request(tmp_path), _offered(None))
    port = plan.spec["door_port"]
    assert isinstance(port, int) and 1 <= port <= 65535
    assert f'(remote tcp "localhost:{port}")' in plan.wrap[-1]
