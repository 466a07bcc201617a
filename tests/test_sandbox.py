"""Launcher pieces that can be checked without a run: env, rlimits, cgroups, macOS path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

import corral
from corral.config import AgentConfig, CorralConfig, parse_config
from corral.daemon.power import capability
from corral.errors import CommandFailed, ConfigError, ToolCallError
from corral.pluginmanager import register_plugins
from corral.sandbox import command, linux
from corral.sandbox.backend import ALWAYS, Confinement, Plan, Protection
from corral.sandbox.launcher import confine as launcher_confine
from corral.sandbox.linux_backend import LinuxBackend
from corral.sandbox.macos_backend import MacBackend
from corral.sandbox.manager import Sandbox
from corral.sandbox.paths import inside_workdir
from corral.sandbox.policy import Policy, agent_env
from corral.sandbox.processes import Child, kill_strays
from corral.sandbox.spec import HostPort, SandboxPolicy
from corral.testing import CorralProject, wait_for
from tests.e2e.support import kill_quietly, wait_until_dead


def test_a_runs_command_folders_are_removed_and_nothing_the_agent_linked_is_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "kept").mkdir(parents=True)
    tmp = tmp_path / "workdir" / ".tmp"
    for name in ("corral-r1-a", "corral-r1-b/deep", "corral-r2-a", "corral-r10-a"):
        (tmp / name).mkdir(parents=True)
    (tmp / "corral-r1-b" / "deep" / "input.json").write_text("{}")
    (tmp / "corral-r1-link").symlink_to(outside / "kept")
    (tmp / "corral-r1-b" / "out").symlink_to(outside)
    command.remove_folders(tmp, "r1")
    assert sorted(p.name for p in tmp.iterdir()) == ["corral-r1-link", "corral-r10-a", "corral-r2-a"]
    assert (outside / "kept").is_dir(), "a link the agent made is removed at most, never followed"
    linked = tmp_path / "linked-tmp"
    linked.symlink_to(tmp)
    command.remove_folders(linked, "r2")
    assert (tmp / "corral-r2-a").is_dir(), "a TMPDIR the agent replaced with a link is not followed"
    command.remove_folders(tmp_path / "missing", "r1")


RUN = {"run_id": "r1", "agent": "a", "attempt": 1, "trace_id": "t", "code": ".", "input": None}
RUNTIME = f"""
import sys, threading
from corral.sandbox import command
threading.Thread(target=threading.Event().wait, daemon=True).start()  # a runtime has threads: the door's server
command.run(sys.argv[1:], {RUN!r})
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_commands_program_dies_with_the_runtime_even_by_sigkill(tmp_path: Path) -> None:
    """What the daemon's kill -9 without bubblewrap leaves: the runtime dies by its own
    parent-death signal, and nothing else would end the program it started."""
    runtime = subprocess.Popen(
        [sys.executable, "-c", RUNTIME, "sleep", "319"], env={**os.environ, "TMPDIR": str(tmp_path)}
    )

    def program() -> psutil.Process | None:
        return next((c for c in psutil.Process(runtime.pid).children() if c.cmdline() == ["sleep", "319"]), None)

    started = wait_for(program, "the program to start", timeout=10)
    runtime.kill()
    runtime.wait(10)
    left = wait_until_dead([started.pid], timeout=5)
    kill_quietly(left)
    assert not left, "the program outlived the runtime that started it"


def test_a_program_that_cannot_start_says_why_and_one_that_can_gives_its_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    bare = tmp_path / "bare"
    bare.write_text("echo hi\n")
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")
    bare.chmod(0o755)
    for program, said in (
        (str(tmp_path / "missing"), "does not exist; fix the path"),
        ("no-such-program-anywhere", "is not found on the sandbox's PATH"),
        (str(plain), "cannot be executed; make it executable (chmod +x)"),
        (str(bare), "is not a program the system can start (a script without a #! line?)"),
    ):
        with pytest.raises(CommandFailed) as failed:
            command.run([program], RUN)
        assert str(failed.value).startswith("the command could not be started: ") and said in str(failed.value)
    assert command.run(["sh", "-c", 'echo "[$CORRAL_ATTEMPT, $#]" > "$CORRAL_RESULT"', "sh", "x", "y"], RUN) == [1, 2]
    assert list(tmp_path.glob("corral-*")) == [], "each run's folder removed when its program ended"


def test_agent_env_is_the_base_plus_grants_only(tmp_path: Path) -> None:
    agent = AgentConfig(name="a", code=tmp_path, entry="a:run", env={"MODE": "x"}, env_from=("TOKEN", "ABSENT"))
    env = agent_env(agent, tmp_path / "w", {"TOKEN": "t", "SECRET": "s", "LANG": "en_US.UTF-8", "PATH": "/evil"})
    assert set(env) == {"PATH", "HOME", "LANG", "TMPDIR", "MODE", "TOKEN"}
    assert env["HOME"] == str(tmp_path / "w") and env["TMPDIR"] == str(tmp_path / "w" / ".tmp")
    assert "/evil" not in env["PATH"] and env["LANG"] == "en_US.UTF-8"


RLIMITS = """
import json, resource, sys
from corral.sandbox.launcher import apply_rlimits
applied = apply_rlimits(json.loads(sys.argv[1]))
names = {"as": "RLIMIT_AS", "cpu": "RLIMIT_CPU", "core": "RLIMIT_CORE",
         "nofile": "RLIMIT_NOFILE", "fsize": "RLIMIT_FSIZE"}
got = {key: resource.getrlimit(getattr(resource, name)) for key, name in names.items()}
print(json.dumps({"applied": applied, **got}))
"""


def test_rlimits_are_set_soft_and_hard_so_the_agent_cannot_raise_them() -> None:
    limits = {"address_space_mb": 1024, "cpu_seconds": 7, "open_files": 64, "file_size_mb": 2, "processes": 10}
    out = subprocess.run(
        [sys.executable, "-c", RLIMITS, json.dumps(limits)], capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout)
    assert got["as"] == [1024 * 2**20] * 2 and got["core"] == [0, 0]
    assert got["cpu"] == [7, 8], "SIGXCPU at the soft limit comes before SIGKILL at the hard one"
    assert got["nofile"] == [64, 64] and got["fsize"] == [2 * 2**20] * 2
    assert {"rlimit:address_space", "rlimit:cpu_seconds", "rlimit:core=0"} <= set(got["applied"])
    if os.getuid() == 0:
        assert "rlimit:processes" not in got["applied"], "root ignores RLIMIT_NPROC; corral says so"


def test_processes_left_by_an_earlier_daemon_are_killed_at_start(tmp_path: Path) -> None:
    """Where nothing killed a run's escaped process with its daemon (macOS, a degraded sandbox),
    the next daemon or foreground run kills it: it still carries HOME=<home>/agents/NAME."""
    agents = tmp_path / "home" / "agents"
    (agents / "a").mkdir(parents=True)
    stray = subprocess.Popen(["sleep", "30"], env={"HOME": str(agents / "a"), "PATH": os.environ["PATH"]})
    bystander = subprocess.Popen(["sleep", "30"], env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    try:
        assert kill_strays(agents) == [stray.pid]
        assert stray.wait(5) == -9 and bystander.poll() is None
    finally:
        stray.kill()
        bystander.kill()


def test_a_wrapped_launcher_is_found_under_bubblewrap(tmp_path: Path) -> None:
    """The watchdog reads the launcher's CPU time (RLIMIT_CPU counts it), not bubblewrap's:
    bubblewrap's processes carry the launcher's whole command line in theirs."""
    from types import SimpleNamespace

    from corral.sandbox import bwrap

    found = bwrap.executable()
    if found is None or not bwrap.detect(found).available:
        pytest.skip("bubblewrap cannot start namespaced processes here")
    command = bwrap.argv(
        found, read_only=["/"], read_write=[], workdir="/", user_namespace=True, network_namespace=True
    )
    script = "import time; time.sleep(30)"
    outer = subprocess.Popen([*command, sys.executable, "-c", script, "-m", "corral.sandbox.launcher"])
    try:
        child = Child(SimpleNamespace(pid=outer.pid), None, wrapped=True)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while (launcher := child.launcher()) is None:
            assert time.monotonic() < deadline, "no launcher under bubblewrap"
            time.sleep(0.05)
        assert launcher.cmdline()[0] == sys.executable and launcher.name() != "bwrap"
        assert child.launcher() is launcher, "found once, then kept"
    finally:
        outer.kill()
        outer.wait()


def test_paths_outside_the_workdir_are_refused(tmp_path: Path) -> None:
    (tmp_path / "inside.txt").write_text("ok")
    (tmp_path / "out").symlink_to("/etc")
    assert inside_workdir("inside.txt", tmp_path) == tmp_path.resolve() / "inside.txt"
    for bad, reason in [("../x", "outside"), ("/etc/passwd", "absolute"), ("out/passwd", "outside"), ("a\x00b", "NUL")]:
        with pytest.raises(ToolCallError, match=reason):
            inside_workdir(bad, tmp_path)


def test_stale_cgroups_of_dead_daemons_are_removed() -> None:
    root = linux.cgroup2_root()
    if root is None or not os.access(root, os.W_OK):
        pytest.skip("no writable cgroup v2 directory on this machine")
    stale = root / "corral-999999999"
    try:
        (stale / "run-x").mkdir(parents=True)
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup here: {exc}")
    assert stale in linux.remove_stale_cgroups(root)
    assert not stale.exists()


def test_macos_path_watches_the_parent_instead_of_pdeathsig() -> None:
    """The non-Linux branch of the launcher, run here: the child exits when its parent goes."""
    code = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import os, sys, time
from corral.sandbox import launcher
launcher.sys.platform = "darwin"
from corral.sandbox.policy import Policy
launcher.apply(Policy(run_id="r", workdir=".", parent_pid=os.getppid(), wire_in=0, wire_out=1, max_frame=1,
                      limits={"address_space_mb": 64}))
print("applied", flush=True)
time.sleep(30)
'''], stdout=subprocess.PIPE, text=True)
print(child.pid, flush=True)
print(child.stdout.readline().strip(), flush=True)
os._exit(0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    pid_line, applied = out.stdout.split()[:2]
    assert applied == "applied"
    import psutil

    try:
        psutil.Process(int(pid_line)).wait(5)
    except psutil.NoSuchProcess:
        pass
    assert not psutil.pid_exists(int(pid_line)) or psutil.Process(int(pid_line)).status() == psutil.STATUS_ZOMBIE


# --------------------------------------------------------------------------- policy, backends, doctor

ALL_OFFERED = {
    name: Protection(name, True, "test", f"{name} works")
    for name in (*ALWAYS, "network", "tcp_ports", "abstract_sockets")
} | {"bwrap": Protection("bwrap", True, "/usr/bin/bwrap", "bwrap works")}


def _request(tmp_path: Path, **changes: object) -> Confinement:
    values: dict[str, object] = {
        "agent": "a",
        "workdir": tmp_path / "w",
        "read_write": (str(tmp_path / "w"),),
        "read_only": (sys.prefix, str(tmp_path)),
        "network": "none",
        "endpoints": (),
        "user": None,
        "degraded_ok": False,
        "python": sys.executable,
    }
    values.update(changes)
    return Confinement(**values)  # type: ignore[arg-type]


def _config(tmp_path: Path, agent_table: dict[str, Any], top: dict[str, Any] | None = None) -> CorralConfig:
    (tmp_path / "code").mkdir(exist_ok=True)
    data = {**(top or {}), "agents": {"a": {"code": "code", "entry": "a:run", **agent_table}}}
    return parse_config(data, tmp_path / "corral.toml", {"CORRAL_HOME": str(tmp_path / "home")})


def test_sandbox_policy_defaults_overrides_and_errors(tmp_path: Path) -> None:
    table = {"sandbox": {"network": ["API.example.com:443", "*:80"]}}
    config = _config(tmp_path, table, {"sandbox": {"degraded_ok": True}})
    policy = config.agents["a"].sandbox
    assert policy.degraded_ok and policy.network == "list"
    assert policy.network_text() == "api.example.com:443, *:80"
    assert _config(tmp_path, {}).agents["a"].sandbox == SandboxPolicy(), "the default: workdir only, no network"
    with pytest.raises(ConfigError) as caught:
        _config(
            tmp_path,
            {"secrets": ["9bad"], "sandbox": {"network": ["nohost"], "read_only": [".."], "usr": 1}},
        )
    text = str(caught.value)
    assert "[agents.a.sandbox] usr: unknown key" in text
    assert "'nohost' is not 'host:port'" in text
    assert "contains the corral home" in text, "granting a folder above the home would open the store"
    with pytest.raises(ConfigError, match="is inside the corral home"):
        _config(tmp_path, {"sandbox": {"read_only": ["home/supervisor"]}})
    assert "'9bad' is not a secret name" in text


def test_linux_plan_with_everything_available(tmp_path: Path) -> None:
    plan = LinuxBackend().plan(_request(tmp_path), ALL_OFFERED)
    assert not plan.missing and plan.module == "corral.sandbox.linux_backend"
    assert plan.wrap[0] == "/usr/bin/bwrap" and plan.wrap[-1] == "--" and plan.namespaced and plan.seccomp
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-user", "--disable-userns", "--unshare-net"):
        assert flag in plan.wrap
    assert plan.wrap[plan.wrap.index("--cap-drop") + 1] == "ALL" and "--cap-add" not in plan.wrap
    workdir = str(tmp_path / "w")
    assert ["--bind-try", workdir, workdir] == plan.wrap[plan.wrap.index(workdir) - 1 : plan.wrap.index(workdir) + 2]
    assert plan.applied == ["bwrap", "ns:ipc", "ns:mount", "ns:net", "ns:pid", "ns:user", "ns:uts"]
    assert plan.spec["landlock"]["tcp_connect"] == [] and plan.spec["landlock"]["tcp_bind"] == []
    assert set(plan.spec["required"]) == {*ALWAYS, "network"}


def test_linux_plan_without_bubblewrap_names_every_protection_it_gives(tmp_path: Path) -> None:
    gone = Protection("", False, "", "bubblewrap (bwrap) is not installed")
    offered = {**ALL_OFFERED, **{name: gone for name in ("bwrap", "processes", "ipc", "mounts", "privileges")}}
    plan = LinuxBackend().plan(_request(tmp_path), offered)
    assert not plan.wrap and not plan.namespaced
    assert {m.split(":")[0] for m in plan.missing} == {"processes", "ipc", "mounts", "privileges"}


def test_linux_plan_for_a_port_list_notes_that_hosts_are_not_enforced(tmp_path: Path) -> None:
    endpoints = (HostPort("api.example.com", 443), HostPort("*", 80))
    plan = LinuxBackend().plan(_request(tmp_path, network="list", endpoints=endpoints), ALL_OFFERED)
    assert "--unshare-net" not in plan.wrap and "ns:net" not in plan.applied
    assert plan.spec["landlock"]["tcp_connect"] == [80, 443] and plan.spec["landlock"]["tcp_bind"] == []
    assert any("api.example.com" in note and "port only" in note for note in plan.notes)


def test_linux_plan_names_what_is_missing(tmp_path: Path) -> None:
    offered = {**ALL_OFFERED, "network": Protection("network", False, "", "user namespaces are disabled")}
    offered["user:ghost"] = Protection("user:ghost", False, "", "there is no user named 'ghost'")
    plan = LinuxBackend().plan(_request(tmp_path, user="ghost"), offered)
    assert any(m.startswith("network: only TCP can be closed") for m in plan.missing), plan.missing
    assert "user: there is no user named 'ghost'" in plan.missing
    degraded = LinuxBackend().plan(_request(tmp_path, user="ghost", degraded_ok=True), offered)
    assert degraded.spec["required"] == [], "degraded_ok: the launcher records what failed instead of refusing"


def test_macos_plan_runs_the_launcher_under_a_generated_seatbelt_profile(tmp_path: Path) -> None:
    offered = {**ALL_OFFERED}
    endpoints = (HostPort("api.example.com", 443),)
    plan = MacBackend().plan(_request(tmp_path, network="list", endpoints=endpoints), offered)
    assert plan.wrap[:2] == ["/usr/bin/sandbox-exec", "-p"] and plan.module == "corral.sandbox.macos_backend"
    profile = plan.wrap[2]
    assert profile.startswith("(version 1)\n(deny default)")
    assert f'(subpath "{os.path.realpath(tmp_path / "w")}")' in profile
    assert '(remote tcp "*:443")' in profile and "(allow network*)" not in profile
    assert plan.spec["required"] == [*ALWAYS, "network"] and plan.spec["seatbelt"] is True
    assert isinstance(plan.spec["processes_in_use"], int)
    assert any("api.example.com" in note for note in plan.notes)
    missing = MacBackend().plan(
        _request(tmp_path), {n: Protection(n, False, "", "sandbox-exec is missing") for n in ALL_OFFERED}
    )
    assert not missing.wrap and "filesystem: sandbox-exec is missing" in missing.missing


class _CustomBackend:
    name = "custom"

    def usable(self) -> bool:
        return True

    def detect(self, users: Sequence[str] = ()) -> dict[str, Protection]:
        return dict(ALL_OFFERED)

    def plan(self, request: Confinement, offered: Mapping[str, Protection]) -> Plan:
        return Plan(self.name, notes=["custom plan"])


class _CustomPlugin:
    @corral.hookimpl(tryfirst=True)
    def corral_register_sandbox_backends(self, register: Callable[[Any], None]) -> None:
        register(_CustomBackend())


def test_a_plugin_backend_registered_tryfirst_takes_precedence(tmp_path: Path) -> None:
    config = _config(tmp_path, {})
    plugins = register_plugins()
    assert Sandbox(config, plugins.manager, {}).backend.name in ("linux", "macos", "none")
    plugins.manager.register(_CustomPlugin(), name="custom")
    sandbox = Sandbox(config, plugins.manager, {})
    assert sandbox.backend.name == "custom"
    assert sandbox.prepare(config.agents["a"]).plan.notes == ["custom plan"]


def test_a_missing_protection_refuses_the_agent_unless_degraded_is_ok(tmp_path: Path) -> None:
    config = _config(tmp_path, {"sandbox": {"user": "corral-no-such-user"}})
    sandbox = Sandbox(config, register_plugins().manager, {})
    refusal = sandbox.prepare(config.agents["a"]).refusal
    assert refusal is not None and refusal["kind"] == "sandbox"
    assert "corral-no-such-user" in refusal["message"]
    assert "degraded_ok = true in [agents.a.sandbox]" in refusal["message"]
    degraded = _config(tmp_path, {"sandbox": {"user": "corral-no-such-user", "degraded_ok": True}})
    prepared = Sandbox(degraded, register_plugins().manager, {}).prepare(degraded.agents["a"])
    assert prepared.refusal is None and "missing:user" in prepared.labels()


def test_the_request_never_grants_a_folder_holding_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, {})
    inside = config.home / "supervisor"  # `python -m corral up` run from supervisord's folder
    inside.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(inside))
    monkeypatch.syspath_prepend(str(tmp_path))
    request = Sandbox(config, register_plugins().manager, {}).request(config.agents["a"])
    home = config.home
    for path in request.read_only + request.read_write:
        assert not (Path(path) == home or Path(path) in home.parents), f"{path} holds the home"
        mine = (config.workdir("a"), home / "plugins")  # its workdir, and drop-in plugins' folder
        assert Path(path) in mine or home not in Path(path).parents, f"{path} is inside the home"
    assert str(config.agents["a"].code) in request.read_only and str(config.workdir("a")) in request.read_write


def test_secrets_cli_reads_values_from_stdin_and_never_prints_them(corral_project: CorralProject) -> None:
    corral_project.agent("a", "def run(ctx):\n    return 1\n", secrets=["API_TOKEN", "OTHER"])
    value = "tok-" + "x" * 20
    result = subprocess.run(
        [sys.executable, "-m", "corral", "secrets", "set", "API_TOKEN", "--backend", "file"],
        input=value + "\n",
        env=corral_project.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    stored = json.loads((corral_project.home / "secrets.json").read_text())["secrets"]
    assert stored == {"API_TOKEN": value}, "the trailing newline of stdin is not part of the value"
    assert stat.S_IMODE((corral_project.home / "secrets.json").stat().st_mode) == 0o600
    listed = corral_project.cli("secrets", "list", "--json")
    assert listed.returncode == 1, "a granted secret stored nowhere is a problem"
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["API_TOKEN"] == {"name": "API_TOKEN", "stored_in": ["file"], "granted_to": ["a"]}
    assert rows["OTHER"]["stored_in"] == [] and value not in listed.stdout
    assert corral_project.cli("secrets", "rm", "API_TOKEN").returncode == 0
    assert corral_project.cli("secrets", "rm", "API_TOKEN").returncode == 5
    short = subprocess.run(
        [sys.executable, "-m", "corral", "secrets", "set", "SHORT"],
        input="abc",
        env=corral_project.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode == 1 and "shorter than 6" in short.stderr and "abc" not in short.stderr


def test_doctor_reports_the_machine_and_each_agent(corral_project: CorralProject) -> None:
    corral_project.agent("plain", "def run(ctx):\n    return 1\n")
    corral_project.agent("ghost", "def run(ctx):\n    return 1\n", sandbox={"user": "corral-no-such-user"})
    result = corral_project.cli("doctor", "--json")
    assert result.returncode == 1, "an agent that would be refused makes doctor exit 1"
    found = json.loads(result.stdout)
    assert {"filesystem", "network", "signals"} <= set(found["machine"]["protections"])
    assert found["agents"]["ghost"]["verdict"] == "refused"
    assert any("corral-no-such-user" in line for line in found["agents"]["ghost"]["missing"])
    machine_ok = all(found["machine"]["protections"][n]["available"] for n in ("filesystem", "network", "signals"))
    assert found["agents"]["plain"]["verdict"] == ("confined" if machine_ok else "refused")
    text = corral_project.cli("doctor")
    assert "agent ghost: refused" in text.stdout and "degraded_ok = true in [agents.ghost.sandbox]" in text.stdout
    protections = found["machine"]["protections"]
    assert set(ALWAYS) <= set(protections), "doctor lists every protection a policy can ask for"
    assert all(p["checked"] for p in protections.values() if p["name"] in ALWAYS), "each says what it was checked by"


def test_doctor_suggests_an_agent_user_only_where_it_would_be_accepted(corral_project: CorralProject) -> None:
    corral_project.agent("plain", "def run(ctx):\n    return 1\n")
    found = json.loads(corral_project.cli("doctor", "--json").stdout)
    suggested = found["machine"]["suggested_user"]
    if suggested is None:
        return  # not root, or no such account: doctor suggests nothing
    corral_project.agent("plain", "def run(ctx):\n    return 1\n", sandbox={"user": suggested["name"]})
    again = json.loads(corral_project.cli("doctor", "--json").stdout)
    assert again["agents"]["plain"]["verdict"] == "confined", again["agents"]["plain"]["missing"]


def test_doctor_says_whether_this_machine_can_keep_awake_and_whether_it_is_on(corral_project: CorralProject) -> None:
    able, reason = capability()
    corral_project.write()
    found = json.loads(corral_project.cli("doctor", "--json").stdout)
    assert found["machine"]["keep_awake"] == {"available": able, "reason": reason, "enabled": True}
    text = corral_project.cli("doctor").stdout
    assert f"{'yes' if able else 'NO '} keep_awake       {reason}" in text
    assert "config: [corral] keep_awake = true" in text
    corral_project.corral["keep_awake"] = False
    corral_project.write()
    off = json.loads(corral_project.cli("doctor", "--json").stdout)["machine"]["keep_awake"]
    assert off == {"available": able, "reason": reason, "enabled": False}
    assert "config: [corral] keep_awake = false" in corral_project.cli("doctor").stdout


def test_doctor_says_whether_a_wake_can_be_told_from_a_clock_step(corral_project: CorralProject) -> None:
    corral_project.write()
    clocks = json.loads(corral_project.cli("doctor", "--json").stdout)["machine"]["clocks"]
    if sys.platform.startswith("linux"):
        assert clocks["available"] and (clocks["awake"], clocks["elapsed"]) == ("CLOCK_MONOTONIC", "CLOCK_BOOTTIME")
    assert f"clocks           {clocks['reason']}" in corral_project.cli("doctor").stdout


def test_a_broken_backend_module_never_lets_a_required_agent_run_unconfined() -> None:
    base = {"run_id": "r", "workdir": ".", "parent_pid": 1, "wire_in": 0, "wire_out": 1, "max_frame": 1}
    broken = Policy(**base, confine_module="corral.sandbox.no_such_backend", confine={"required": ["filesystem"]})
    applied, refusal = launcher_confine(broken)
    assert applied == [] and refusal is not None and "no_such_backend" in refusal
    lenient = Policy(**base, confine_module="corral.sandbox.no_such_backend", confine={"required": []})
    assert launcher_confine(lenient) == (["missing:sandbox"], None)


def test_controllers_offered_to_the_runs_parent_are_enabled_for_its_runs() -> None:
    root = linux.cgroup2_root()
    if root is None or not os.access(root, os.W_OK):
        pytest.skip("no writable cgroup v2 directory on this machine")
    parent = root / f"corral-test-{os.getpid()}"
    parent.mkdir()
    try:
        offered = (parent / "cgroup.controllers").read_text().split()
        if not offered:
            pytest.skip(f"{root} enables no controller for its children (its cgroup.subtree_control is empty)")
        # memory and pids where the machine has them; any offered controller shows the mechanism
        wanted = tuple(c for c in ("memory", "pids") if c in offered) or (offered[0],)
        assert linux.enable_controllers(parent, wanted) == list(wanted)
        assert set(wanted) <= set((parent / "cgroup.subtree_control").read_text().split())
    finally:
        linux.remove_cgroup(parent)
