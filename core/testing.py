"""Fixtures for testing corral agents and plugins, shipped as a pytest plugin.

``corral_project`` gives a throw-away corral home and config in ``tmp_path``, writes
agents into it, and drives the real CLI and a real daemon process against it. Nothing
touches the user's own ``~/.corral``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PROVIDER_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")
"""Never passed to a test's corral: a test must not reach a real provider by detection."""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


class DaemonProcess:
    """A real ``corral up`` process for one project."""

    def __init__(self, project: CorralProject, process: subprocess.Popen[bytes]) -> None:
        self.project = project
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"corral up exited with {self.process.returncode}: {self.project.daemon_stderr()}")
            if self.project.socket.exists():
                return
            time.sleep(0.05)
        raise AssertionError(f"corral up did not open its socket within {timeout}s")

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


class CorralProject:
    """A corral home plus a config file and an agents folder, all under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.agents_dir = root / "agents"
        self.agents_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "corral.toml"
        self.corral: dict[str, Any] = {"grace_seconds": 10}
        self.limits: dict[str, Any] = {}
        self.agents: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, dict[str, Any]] = {"console": {"enabled": False}}
        """Other top-level tables by name (``telemetry``, ``metrics``, ...), written last. The
        console is off, so test daemons listen on no port; a console test turns it on."""
        self.daemons: list[DaemonProcess] = []

    @property
    def socket(self) -> Path:
        return self.home / "corral.sock"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_") and k not in PROVIDER_KEYS}
        env.update(CORRAL_HOME=str(self.home), CORRAL_CONFIG=str(self.config_path))
        return env

    def agent(self, name: str, source: str, *, entry: str = "run", **table: Any) -> None:
        """Write ``agents/<name>.py`` and its ``[agents.<name>]`` table."""
        (self.agents_dir / f"{name}.py").write_text(textwrap.dedent(source))
        self.agents[name] = {"code": "agents", "entry": f"{name}:{entry}", **table}
        self.write()

    def command_agent(self, name: str, command: list[str], files: dict[str, str], **table: Any) -> Path:
        """Write ``files`` (name: text; a name ending in ``.sh`` is made executable) into
        ``agents/<name>/`` and an ``[agents.<name>]`` table that runs ``command`` there; returns the folder."""
        folder = self.agents_dir / name
        folder.mkdir(exist_ok=True)
        for file, text in files.items():
            (folder / file).write_text(textwrap.dedent(text))
            if file.endswith(".sh"):
                (folder / file).chmod(0o755)
        self.agents[name] = {"code": f"agents/{name}", "command": command, **table}
        self.write()
        return folder

    def write(self) -> Path:
        lines = ["[corral]"] + [f"{k} = {_toml_value(v)}" for k, v in self.corral.items()]
        if self.limits:
            lines += ["", "[limits]"] + [f"{k} = {_toml_value(v)}" for k, v in self.limits.items()]
        for name, table in self.agents.items():
            lines += ["", f"[agents.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        for name, table in self.models.items():
            lines += ["", f"[models.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        for name, table in self.tables.items():
            lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        return self.config_path

    def cli(self, *args: str, timeout: float = 120.0, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the real ``corral`` command against this project."""
        result = subprocess.run(
            [sys.executable, "-m", "corral", *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"corral {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json", check=True).stdout)

    def start_daemon(self, *, write_config: bool = True) -> DaemonProcess:
        """Start ``corral up``; ``write_config=False`` keeps a config file written by hand."""
        if write_config:
            self.write()
        stderr = open(self.root / "daemon.stderr", "ab")  # noqa: SIM115 - owned by the process
        process = subprocess.Popen(
            [sys.executable, "-m", "corral", "up"],
            env=self.env,
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        stderr.close()
        daemon = DaemonProcess(self, process)
        self.daemons.append(daemon)
        daemon.wait_ready()
        return daemon

    def daemon_stderr(self) -> str:
        path = self.root / "daemon.stderr"
        return path.read_text() if path.exists() else ""

    def run_record(self, run_id: str) -> dict[str, Any]:
        return self.cli_json("trace", run_id)["run"]

    def wait_for_run(
        self,
        run_id: str,
        states: tuple[str, ...] = ("succeeded", "failed", "cancelled", "abandoned", "on_hold"),
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.cli("trace", run_id, "--json")
            if result.returncode == 0:
                run = json.loads(result.stdout)["run"]
                if run["state"] in states:
                    return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not reach {states} within {timeout}s")

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``predicate`` every 0.1 s until it returns something true, and return that;
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def corral_project(tmp_path: Path) -> Iterator[CorralProject]:
    """A fresh corral home and config under ``tmp_path``; daemons are killed afterwards."""
    project = CorralProject(tmp_path)
    try:
        yield project
    finally:
        project.close()
