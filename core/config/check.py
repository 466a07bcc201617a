"""``corral check``: what a valid TOML file can still get wrong, found before ``up``.

:func:`check_file` is the command's whole pass: the config's own problems, then, for every
agent that can be read (the whole config, or, when one agent's table is invalid, each other
agent on its own), what :func:`check_config` finds, what importing its module in a
throwaway process finds (:func:`entry_problems`), and its timed triggers' next fire times
(:func:`next_fires`). The daemon runs :func:`check_config` alone at start: it never
imports an agent's code outside a run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.alerts.service import configured_sinks
from corral.config.agents import AgentConfig
from corral.config.loader import CorralConfig, load_config, parse_config
from corral.config.mcp import plugin_grants
from corral.config.problems import Problems, file_name
from corral.errors import ConfigError
from corral.pluginmanager import Plugins, load_plugins
from corral.sandbox.command import resolved, unrunnable
from corral.sandbox.door.server import unserved_env
from corral.sandbox.policy import sandbox_path
from corral.schedule.scheduler import build_all, trigger_problems
from corral.schedule.triggers import TimedTrigger
from corral.tools import ToolSpec


@dataclass(frozen=True)
class Fires:
    """A timed trigger's next fire times, for ``corral check`` to show."""

    agent: str
    trigger: str
    """What the trigger says of itself (``cron 0 7 * * * Europe/Paris``)."""
    zone: dt.tzinfo
    """The zone its times are shown in: the trigger's own (cron), else ``[corral] timezone``."""
    times: tuple[float, ...]


@dataclass
class Report:
    """Everything one ``corral check`` found."""

    invalid: list[str] = field(default_factory=list)
    """The config's own problems (it does not load); each other agent was still checked alone."""
    problems: list[str] = field(default_factory=list)
    """What the agents that could be read still get wrong."""
    fires: list[Fires] = field(default_factory=list)
    agents: int = 0
    """Agents checked past the config's format."""


def check_file(path: Path, environ: Mapping[str, str], timeout: float, now: float | None = None) -> Report:
    """Every problem of the config at ``path`` in one pass (see the module's docstring);
    each agent's module gets ``timeout`` seconds to import."""
    report = Report()
    try:
        configs = [load_config(path, environ)]
    except ConfigError as exc:
        report.invalid = list(exc.problems)
        configs = list(_agents_alone(path, environ))
    if not configs:
        return report
    plugins = load_plugins(configs[0].plugins, configs[0].home / "plugins")
    found: dict[str, None] = {}
    for config in configs:
        found.update(dict.fromkeys(check_config(config, plugins)))
        report.fires += next_fires(config, plugins, environ, now=now)
        report.agents += len(config.agents)
    agents = [(config, agent) for config in configs for agent in config.agents.values()]
    found.update(dict.fromkeys(entry_problems(agents, environ, timeout)))
    report.problems = list(found)
    return report


def _agents_alone(path: Path, environ: Mapping[str, str]) -> Iterable[CorralConfig]:
    """Each agent whose own table is valid, as a config of its own (every other table kept,
    ``[alerts]`` routes and expectations trimmed to that agent), so that an invalid table
    hides nothing of another agent; nothing when the file cannot be read or a table outside
    ``[agents]`` is invalid (those problems are all in the loader's list)."""
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return
    agents = data.get("agents")
    if not isinstance(agents, dict):
        return
    for name, table in agents.items():
        alone: dict[str, Any] = {**data, "agents": {name: table}}
        alerts = data.get("alerts")
        if isinstance(alerts, dict):
            alone["alerts"] = {
                key: {k: v for k, v in value.items() if k == name}
                if key in ("agents", "expect") and isinstance(value, dict)
                else value
                for key, value in alerts.items()
            }
        try:
            yield parse_config(alone, path.resolve(), environ)
        except ConfigError:
            continue


def check_config(config: CorralConfig, plugins: Plugins | None = None) -> list[str]:
    """Problems that would make an agent fail at run time, each with its fix."""
    p = Problems(file_name(config.path))
    if plugins is None:
        plugins = load_plugins(config.plugins, config.home / "plugins")
    for failure in plugins.failures:
        p.fail("corral", "plugins", failure)
    for agent in config.agents.values():
        section = f"agents.{agent.name}"
        if agent.command is not None:
            program = resolved(agent.command, agent.code)[0]
            why = unrunnable(program, sandbox_path())
            if why is not None:
                p.fail(section, "command", why)
        elif not _findable(agent):
            module = str(agent.entry).split(":", 1)[0]
            relative = module.replace(".", "/")
            p.fail(
                section,
                "entry",
                f"module {module!r} not found in {agent.code}; create {relative}.py there or fix entry",
            )
        for model in agent.models:
            endpoint = config.models[model].endpoint if model in config.models else None
            if endpoint is not None and endpoint.provider not in plugins.providers:
                installed = ", ".join(sorted(plugins.providers)) or "none"
                p.fail(
                    f"models.{model}",
                    "provider",
                    f"no installed plugin provides {endpoint.provider!r}; installed: {installed}",
                )
            missing = config.models[model].missing_key if model in config.models else None
            if missing:
                p.fail(
                    f"models.{model}",
                    "api_key_env",
                    f"{missing} is not set in this environment, so agent {agent.name!r} cannot call it; "
                    f"set {missing} where corral runs",
                )
        for tool in plugin_grants(agent.tools, config.mcp):
            if tool not in plugins.tools:
                known = ", ".join(sorted(plugins.tools)) or "none"
                p.fail(section, "tools", f"no plugin provides tool {tool!r}; available: {known}")
                continue
            for secret in plugins.tools[tool].secrets:
                if secret not in agent.secrets:
                    p.fail(
                        section,
                        "secrets",
                        f"tool {tool!r} needs secret {secret!r}; add it to secrets "
                        f"(and store it with `corral secrets set {secret}`)",
                    )
    return [
        *p.items,
        *configured_sinks(config, plugins.manager)[1],
        *trigger_problems(config, plugins.manager, os.environ),
        *settings_problems(config, plugins.tools),
    ]


def settings_problems(config: CorralConfig, tools: Mapping[str, ToolSpec]) -> list[str]:
    """Settings tables that the loaded tools would not accept, each with its fix."""
    import jsonschema_rs

    p = Problems(file_name(config.path))
    for name in config.tools:
        if name not in tools:
            near = difflib.get_close_matches(name, list(tools), n=1)
            hint = f"did you mean {near[0]!r}?" if near else "check the name with `corral tools`, or load its plugin"
            p.fail(f"tools.{name}", None, f"no loaded plugin provides tool {name!r}; {hint}")
    for agent in config.agents.values():
        for name in plugin_grants(agent.tools, config.mcp):
            section = f"agents.{agent.name}.tool_settings.{name}"
            spec = tools.get(name)
            if spec is None:
                continue  # check_config already says no plugin provides it
            if name not in agent.tool_settings:
                needed = (spec.settings_schema or {}).get("required")
                if needed:
                    p.fail(section, None, f"tool {name!r} needs settings {', '.join(needed)}; add the table")
                continue
            if spec.settings_schema is None:
                p.fail(section, None, f"tool {name!r} ({spec.plugin}) takes no settings; remove the table")
                continue
            validator = jsonschema_rs.Draft202012Validator(spec.settings_schema)
            for error in validator.iter_errors(agent.tool_settings[name]):
                key = "/".join(str(part) for part in error.instance_path) or "table"
                p.fail(section, key, f"{error.message}; see the tool's documentation (docs/tools.md)")
    return p.items


def entry_problems(
    agents: Iterable[tuple[CorralConfig, AgentConfig]], environ: Mapping[str, str], timeout: float
) -> list[str]:
    """Import each agent's module in a throwaway process (:mod:`corral.sandbox.entrycheck`),
    all at once, and report an import that fails or outlasts ``timeout`` seconds, an entry
    function that is missing, or one that cannot take the run's context. A module corral
    cannot find is left to :func:`check_config`, which says where to create it."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="corral-check-") as scratch:
        started = [
            (config, agent, _start_import(agent, Path(scratch) / agent.name, environ))
            for config, agent in agents
            if _findable(agent)
        ]
        deadline = time.monotonic() + timeout
        for config, agent, process in started:
            answer, late = _answer(process, deadline)
            problem = _entry_problem(agent, answer, timeout if late else None, process.returncode)
            if problem:
                found = Problems(file_name(config.path))
                found.fail(f"agents.{agent.name}", "entry", problem)
                problems += found.items
    return problems


def _start_import(agent: AgentConfig, folder: Path, environ: Mapping[str, str]) -> subprocess.Popen[bytes]:
    folder.mkdir(mode=0o700)
    env = {"PATH": environ.get("PATH", os.defpath), "HOME": str(folder), "TMPDIR": str(folder)}
    if "LANG" in environ:
        env["LANG"] = environ["LANG"]
    env.update({name: environ[name] for name in agent.env_from if name in environ})
    env.update(agent.env)
    env.update(unserved_env(bool(agent.models)))
    spec = {"code": str(agent.code), "entry": agent.entry, "limits": dataclasses.asdict(agent.limits)}
    return subprocess.Popen(
        [sys.executable, "-I", "-B", "-m", "corral.sandbox.entrycheck", json.dumps(spec)],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _answer(process: subprocess.Popen[bytes], deadline: float) -> tuple[dict[str, Any] | None, bool]:
    """The child's answer (None if it died without one), and whether ``deadline`` came
    first. Its whole process group is killed either way: nothing the module started
    outlives the check."""
    try:
        out, _ = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
        late = False
    except subprocess.TimeoutExpired:
        late = process.poll() is None  # not one that ended as the time was up
        out = b""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        out, _ = process.communicate(timeout=5)  # all it wrote, what an expired wait had read included
    except (subprocess.TimeoutExpired, ValueError):  # a descendant that left the group holds the pipe
        pass
    try:
        answer = json.loads(out)
    except ValueError:
        return None, late
    return (answer if isinstance(answer, dict) else None), late


def _entry_problem(
    agent: AgentConfig, answer: dict[str, Any] | None, late: float | None, code: int | None
) -> str | None:
    """What is wrong with ``agent``'s entry by the child's ``answer`` (``late``: the timeout
    it outlasted; ``code``: its exit status), or None."""
    module, func = str(agent.entry).split(":", 1)
    stay = f"an agent's module should only define things when imported, and do its work in {func}(ctx)"
    if late is not None:
        return f"importing module {module!r} did not finish within {late:g}s, so it was stopped; {stay}"
    if answer is None:
        return f"importing module {module!r} ended its process (exit status {code}) before it could be checked; {stay}"
    problem = answer.get("problem")
    if problem is None:
        return None
    if problem == "import":
        where = f" ({answer['where']})" if answer.get("where") else ""
        fix = "install it where corral runs, or fix the import" if answer["type"] == "ModuleNotFoundError" else "fix it"
        return f"importing module {module!r} raised {answer['type']}: {answer['message']}{where}; {fix}"
    if problem == "missing":
        functions = answer.get("functions") or []
        near = difflib.get_close_matches(func, functions, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"functions there: {', '.join(functions) or 'none'}"
        return f"module {module!r} has no function {func!r} ({answer.get('file')}); {hint} Fix entry or define it"
    if problem == "not_callable":
        return f"{agent.entry} is not a function but of type {answer['type']} ({answer.get('file')}); fix entry"
    taken = (
        "takes no argument" if answer["signature"] == "()" else f"cannot take one argument: {func}{answer['signature']}"
    )
    return (
        f"{agent.entry} {taken} ({answer['where']}), but corral calls it with the run's context; "
        f"define it as def {func}(ctx):"
    )


def next_fires(
    config: CorralConfig,
    plugins: Plugins,
    environ: Mapping[str, str] = os.environ,
    count: int = 3,
    now: float | None = None,
) -> list[Fires]:
    """The next ``count`` fire times after ``now`` of every enabled agent's timed triggers,
    built as the daemon builds them (:func:`~corral.schedule.scheduler.build_all`); none
    when a trigger cannot be built (:func:`check_config` reports why)."""
    try:
        built = build_all(config, plugins.manager, environ, lambda message: None)
    except ConfigError:
        return []
    start = time.time() if now is None else now
    fires = []
    for trigger_config, trigger in built.values():
        if not isinstance(trigger, TimedTrigger):
            continue
        times: list[float] = []
        moment: float | None = start
        while len(times) < count and moment is not None:
            moment = trigger.next_after(moment)
            if moment is not None:
                times.append(moment)
        zone = getattr(trigger, "zone", None)
        fires.append(Fires(trigger_config.agent, trigger.describe(), zone or config.zone, tuple(times)))
    return fires


def _findable(agent: AgentConfig) -> bool:
    if agent.entry is None:
        return False  # a command agent has no module: its program is checked on its own
    module = agent.entry.split(":", 1)[0]
    relative = module.replace(".", "/")
    in_code = (agent.code / f"{relative}.py").is_file() or (agent.code / relative / "__init__.py").is_file()
    return in_code or _installed(module)


def _installed(module: str) -> bool:
    """Whether ``module`` is importable from the installation (``corral.assistant``, a package)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
