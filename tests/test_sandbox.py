"""Launcher pieces that can be checked without a run: env, rlimits, cgroups, macOS path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corral.config import AgentConfig
from corral.errors import ToolCallError
from corral.sandbox import linux
from corral.sandbox.paths import inside_workdir
from corral.sandbox.policy import agent_env


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
