"""``[agents.NAME]`` and ``[limits]``: each agent, with every table nested under it.

An agent's own keys are declared on :class:`AgentConfig`; its nested tables are read by
their sections' modules (budget, guardrails, schedule, sandbox, tools) and put on the
same object, so the daemon holds one validated value per agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from msgspec import Meta

from corral.config.budget import Budget, read_budget
from corral.config.guardrails import GuardrailConfig, read_guardrails
from corral.config.kinds import (
    EnvName,
    EnvNames,
    Flag,
    Key,
    Limit,
    PositiveInt,
    PositiveNumber,
    PositiveSeconds,
    Rule,
    String,
    Text,
    Texts,
    Wrong,
    read,
)
from corral.config.problems import Problems
from corral.config.sandbox import home_problems, read_sandbox, read_secret_grants
from corral.config.schedule import SchedulePolicy, TriggerConfig, read_policy, read_triggers
from corral.config.tools import read_tool_settings
from corral.sandbox.spec import SandboxPolicy

BASE_ENV = ("PATH", "HOME", "LANG", "TMPDIR")
"""Variables every agent gets from corral itself; config cannot override them."""

AgentName = Annotated[
    str,
    Meta(pattern=r"^(?!corral$)[a-z0-9][a-z0-9_-]{0,62}$"),
    Rule(
        "agent names use lowercase letters, digits, '-' and '_' (max 63), starting with "
        "a letter or digit; 'corral' is reserved for the daemon's own log"
    ),
]
Entry = Annotated[
    str, Meta(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"), Rule('{value!r} must name a function as "module:function"')
]
Command = Annotated[
    tuple[String, ...],
    Meta(min_length=1),
    Rule("{value!r} is not a list of strings, the program first"),
]
EnvValue = Annotated[String, Rule("value {value!r} must be a string")]
_ONE_OF = (
    'give exactly one of entry = "module:function" (a Python function corral calls with ctx) '
    'or command = ["program", "arg", ...] (any program, run in the same sandbox)'
)

_UNLIMITED = 'or "none" to leave it unlimited'


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run. ``None`` means "not limited by corral"."""

    address_space_mb: Annotated[Limit, Key(f"give the virtual memory of one process in MiB, {_UNLIMITED}")] = 4096
    memory_mb: Annotated[Limit, Key(f"give the memory of the run's processes together in MiB, {_UNLIMITED}")] = 1024
    cpu_seconds: Annotated[Limit, Key(f"give the CPU seconds of one process, {_UNLIMITED}")] = 600
    open_files: Annotated[Limit, Key(f"give the open descriptors of one process, {_UNLIMITED}")] = 256
    processes: Annotated[Limit, Key(f"give the number of the run's processes, {_UNLIMITED}")] = 64
    file_size_mb: Annotated[Limit, Key(f"give the size of the largest file in MiB, {_UNLIMITED}")] = 256
    disk_mb: Annotated[Limit, Key(f"give the disk the agent's workdir may hold in MiB, {_UNLIMITED}")] = 1024
    """Disk the agent's workdir may hold, in MiB (blocks allocated, checked by the daemon)."""
    disk_files: Annotated[
        Limit, Key(f"give the number of files and folders the agent's workdir may hold, {_UNLIMITED}")
    ] = 20000
    """Files and folders the agent's workdir may hold."""
    state_value_kb: Annotated[Limit, Key(f"give the size of the largest ctx.state value in KiB, {_UNLIMITED}")] = 1024
    """Largest single ``ctx.state`` value one run may write, in KiB (packed)."""
    state_mb: Annotated[Limit, Key(f"give what the agent's whole ctx.state may hold in MiB, {_UNLIMITED}")] = 4
    """What the agent's whole ``ctx.state`` may hold, in MiB (keys and packed values); it travels
    to every run in one wire frame, so it must stay below ``[corral] frame_max_bytes``."""
    journal_mb: Annotated[Limit, Key(f"give the journal bytes one run may write in MiB, {_UNLIMITED}")] = 128
    """Journal bytes one run may write, in MiB (packed entries, ``ctx.state`` values included)."""
    wall_seconds: Annotated[PositiveSeconds, Key('give the wall-clock limit, e.g. "10m"')] = 900.0


@dataclass(frozen=True)
class AgentConfig:
    """One ``[agents.NAME]`` table, validated."""

    name: str
    code: Path
    entry: Annotated[Entry, Key('name the agent function, e.g. entry = "counter:run"')] | None = None
    """The Python function the runtime calls with ``ctx``; None for a ``command`` agent."""
    command: (
        Annotated[Command, Key('list the program and its arguments, e.g. command = ["node", "agent.js"]')] | None
    ) = None
    """A program the runtime starts instead of calling a function (docs/agents.md, "Agents in any language")."""
    every: Annotated[PositiveSeconds, Key('give an interval such as "30s" or "5m"')] | None = None
    input: Any = None
    env: Mapping[str, str] = field(default_factory=dict)
    env_from: Annotated[EnvNames, Key("list variable names to copy from the daemon's environment")] = ()
    tools: Annotated[Texts, Key("list the tool names this agent may call")] = ()
    limits: Limits = Limits()
    on_crash: Annotated[Literal["resume", "fail"], Key("choose what a crashed run does")] = "resume"
    max_attempts: Annotated[PositiveInt, Key("give how many times a run may be started")] = 3
    on_code_change: Annotated[Literal["fail", "continue"], Key("choose what resuming under changed code does")] = "fail"
    on_divergence: Annotated[Literal["fail", "live"], Key("choose what a resumed run's changed model request does")] = (
        "fail"
    )
    retention_days: Annotated[PositiveNumber, Key("give how many days finished runs are kept")] = 30.0
    retention_mb: Annotated[PositiveNumber, Key("give the journal size kept for this agent, in MiB")] = 256.0
    enabled: Annotated[Flag, Key("write enabled = true or false")] = True
    models: Annotated[Texts, Key("list the [models.NAME] this agent may call")] = ()
    budget: Budget = Budget()
    guardrails: GuardrailConfig = GuardrailConfig()
    sandbox: SandboxPolicy = SandboxPolicy()
    """``[sandbox]`` overridden by ``[agents.NAME.sandbox]``: paths, network, user (docs/sandbox.md)."""
    secrets: tuple[str, ...] = ()
    """Secret names granted to the agent, each delivered as the variable of that name (docs/secrets.md)."""
    triggers: tuple[TriggerConfig, ...] = ()
    """``every`` and ``[[agents.NAME.triggers]]``: what starts runs (docs/scheduling.md)."""
    schedule: SchedulePolicy = SchedulePolicy()
    """``[agents.NAME.schedule]``: overlap, queue bound, concurrency, missed runs, no-progress."""
    tool_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """``[agents.NAME.tool_settings.TOOL]``: the operator's settings per granted tool (docs/tools.md)."""


def read_limits(p: Problems, section: str, data: object, base: Limits) -> Limits:
    """``[limits]`` over the defaults, or ``[agents.NAME.limits]`` over ``[limits]``."""
    return p.read(section, data, Limits, base, shape="a table of limits")


def read_agents(
    p: Problems, data: object, base_dir: Path, limits: Limits, sandbox: SandboxPolicy, home: Path
) -> dict[str, AgentConfig]:
    """Every ``[agents.NAME]`` that can be read (problems for the others are in ``p``).

    ``limits`` and ``sandbox`` are the file's defaults an agent's own tables override;
    relative paths start at ``base_dir``, the config file's folder; ``home`` is the corral
    home no grant may open.
    """
    agents: dict[str, AgentConfig] = {}
    for name, table in p.table("agents", data, "tables such as [agents.NAME]").items():
        agent = _read_agent(p, name, table, base_dir, limits, sandbox, home)
        if agent is not None:
            agents[name] = agent
    return agents


def _read_agent(
    p: Problems, name: str, data: object, base_dir: Path, limits: Limits, sandbox: SandboxPolicy, home: Path
) -> AgentConfig | None:
    section = f"agents.{name}"
    try:
        read(name, AgentName)
    except Wrong as exc:
        p.fail(section, None, str(exc))
        return None
    if not isinstance(data, Mapping):
        p.fail(section, None, "must be a table")
        return None
    p.unknown(section, data, [f.name for f in fields(AgentConfig) if f.name != "name"])
    values = p.keys(section, data, AgentConfig)
    env = _read_env(p, section, data.get("env"))
    env_from = values.pop("env_from", ())
    for var in env_from:
        if var in BASE_ENV:
            p.fail(section, "env_from", f"{var!r} is set by corral itself ({', '.join(BASE_ENV)}); remove it")
    policy = read_sandbox(p, f"{section}.sandbox", data.get("sandbox"), sandbox, base_dir)
    if "sandbox" in data:
        home_problems(p, f"{section}.sandbox", policy, home)
    grants = read_secret_grants(p, section, data, env, env_from)
    if "entry" in data and "command" in data:
        p.fail(section, None, f"has both entry and command; {_ONE_OF}")
    elif "entry" not in data and "command" not in data:
        p.fail(section, "entry", f"is required; {_ONE_OF}")
    elif "command" in values and not values["command"][0].strip():
        p.fail(section, "command", 'its first item, the program, is empty; e.g. command = ["node", "agent.js"]')
    tools = values.pop("tools", ())
    return AgentConfig(
        name=name,
        code=_read_code(p, section, data.get("code"), base_dir),
        entry=values.pop("entry", None if "command" in data else "missing:run"),
        input=data.get("input"),
        env=env,
        env_from=env_from,
        tools=tools,
        limits=read_limits(p, f"{section}.limits", data.get("limits"), limits),
        budget=read_budget(p, f"{section}.budget", data.get("budget")),
        guardrails=read_guardrails(p, f"{section}.guardrails", data.get("guardrails")),
        sandbox=policy,
        secrets=grants,
        triggers=read_triggers(p, name, values.get("every"), data.get("triggers")),
        schedule=read_policy(p, name, data.get("schedule")),
        tool_settings=read_tool_settings(p, name, data.get("tool_settings"), tools),
        **values,
    )


def _read_code(p: Problems, section: str, value: object, base_dir: Path) -> Path:
    fix = 'the folder the agent\'s module is imported from, e.g. code = "agents"'
    try:
        code = (base_dir / Path(read(value, Text)).expanduser()).resolve()
    except Wrong:
        p.fail(section, "code", f"is required: {fix}" if value is None else f"{value!r} is not {fix}")
        return base_dir
    if not code.is_dir():
        p.fail(
            section,
            "code",
            f"folder {code} does not exist; create it or fix the path "
            "(relative paths start at the config file's folder)",
        )
    return code


def _read_env(p: Problems, section: str, data: object) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in p.table(section, data, 'a table of NAME = "value" strings', key="env").items():
        key = f"env.{name}"
        try:
            read(name, EnvName)
        except Wrong:
            p.fail(section, key, "is not a valid environment variable name")
            continue
        if name in BASE_ENV:
            p.fail(section, key, f"is set by corral itself ({', '.join(BASE_ENV)}); remove it")
            continue
        found = p.value(section, {key: value}, key, EnvValue, None, "quote it")
        if found is not None:
            env[name] = found
    return env
