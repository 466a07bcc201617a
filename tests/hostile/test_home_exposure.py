"""The corral home stays out of every agent's sight, however the daemon was started.

Found by an attacker's review: a folder on the daemon's ``sys.path`` (``PYTHONPATH``, or
``python -m corral up`` started from the home's parent) was bound into every sandbox
unchecked, so an agent could reach sockets and files next to and inside the home; a
home inside a bound folder (a virtualenv, ``/usr/local/var``) was readable; and a root
daemon followed an agent's symlink when it gave the workdir to the agent's user. Each
test runs real agents in the foreground and asserts the effect from outside.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.testing import CorralProject
from tests.hostile.support import CountingServer

pytestmark = pytest.mark.hostile

NOSY = """
import json, os, socket

def run(ctx):
    out = {}
    for name, path in ctx.input["sockets"].items():
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            out[name] = "connected"
        except OSError as error:
            out[name] = type(error).__name__
        finally:
            s.close()
    for name, path in ctx.input["folders"].items():
        try:
            out[name] = sorted(os.listdir(path))
        except OSError as error:
            out[name] = type(error).__name__
    return out
"""


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[CountingServer]:
    """A root-owned 0600 Unix socket beside the home, counting the connections it accepts."""
    served = CountingServer(str(tmp_path / "private.sock"))
    yield served
    served.close()


def _run(project: CorralProject, agent: str, payload: dict[str, object]) -> dict[str, object]:
    done = project.cli("run", agent, "--wait", "--json", "--input", json.dumps(payload), timeout=120)
    run: dict[str, object] = json.loads(done.stdout)
    assert run["state"] == "succeeded", (run, done.stderr)
    return run


def test_the_homes_parent_on_the_daemons_sys_path_is_not_bound(
    tmp_path: Path, listener: CountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = CorralProject(tmp_path)
    project.agent("nosy", NOSY)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the home's parent, as `python -m corral` from there
    run = _run(
        project,
        "nosy",
        {
            "sockets": {"next to the home": str(tmp_path / "private.sock"), "control": str(project.socket)},
            "folders": {"home": str(project.home), "home's parent": str(tmp_path)},
        },
    )
    result = run["result"]
    assert isinstance(result, dict)
    assert listener.accepted == 0, f"an agent reached a 0600 socket beside the home: {result}"
    assert result["next to the home"] != "connected" and result["control"] != "connected", result
    assert result["home"] in ("FileNotFoundError", "PermissionError", ["agents"]), result
    assert "corral.toml" not in json.dumps(result), "the agent listed the folder holding the config"


def test_a_home_inside_a_bound_system_folder_shows_only_the_agents_workdir() -> None:
    """A home under ``/usr/local/var`` lies inside ``/usr``, which every agent reads: bubblewrap
    covers the home with an empty tmpfs, so the store, the secrets and other workdirs stay hidden."""
    base = Path("/usr/local/var")
    if not os.access(base if base.exists() else base.parent, os.W_OK):
        pytest.skip("needs to write under /usr/local/var (root)")
    base.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="corral-hostile-", dir=base))
    try:
        project = CorralProject(root)
        project.agent("nosy", NOSY)
        project.agent("victim", "def run(ctx):\n    open('private.txt', 'w').write('x')\n")
        _run(project, "victim", {})
        (project.home / "secrets.json").write_text("{}")
        home = project.home
        run = _run(
            project,
            "nosy",
            {
                "sockets": {},
                "folders": {
                    "home": str(home),
                    "agents": str(home / "agents"),
                    "victim": str(home / "agents" / "victim"),
                },
            },
        )
        result = run["result"]
        assert isinstance(result, dict)
        assert result["home"] == ["agents"], result
        assert result["agents"] == ["nosy"], result
        assert result["victim"] == "FileNotFoundError", result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_daemon_never_follows_an_agents_link_when_it_chowns_the_workdir(tmp_path: Path, hostile_user: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    project = CorralProject(tmp_path / "project")
    project.agent(
        "linker",
        """
import os, shutil

def run(ctx):
    if os.path.isdir(".tmp") and not os.path.islink(".tmp"):
        shutil.rmtree(".tmp")
    if not os.path.islink(".tmp"):
        os.symlink(ctx.input["target"], ".tmp")
    return os.getuid()
""",
        sandbox={"user": hostile_user},
    )
    for _ in range(2):  # the first run plants the link; the second run's preparation must not follow it
        _run(project, "linker", {"target": str(victim)})
    info = victim.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (0, 0, 0o700), "the daemon gave a root folder away"
