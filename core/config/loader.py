"""Load ``corral.toml`` once into typed, validated objects.

Everything the daemon reads from config is checked here, at load, so a bad value is
reported with its file, table and key before any agent starts, and the running daemon
can keep its last good config when a reload fails.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.config.guardrails import GuardrailConfig, read_guardrails
from corral.config.models import GLOBAL_BUDGET_KEYS, Budget, ModelConfig, read_budget, read_models, unpriced_cost_caps
from corral.config.tools import read_tool_settings
from corral.config.units import parse_duration, zone_named
from corral.errors import ConfigError
from corral.sandbox.spec import SandboxPolicy, read_isolation
from corral.schedule.settings import SchedulePolicy, ScheduleSettings, TriggerConfig

if TYPE_CHECKING:
    from corral.config.alerts import AlertsConfig

AGENT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENTRY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
BASE_ENV = ("PATH", "HOME", "LANG", "TMPDIR")
"""Variables every agent gets from corral itself; config cannot override them."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run. ``None`` means "not limited by corral"."""

    address_space_mb: int | None = 4096
    memory_mb: int | None = 1024
    cpu_seconds: int | None = 600
    open_files: int | None = 256
    processes: int | None = 64
    file_size_mb: int | None = 256
    disk_mb: int | None = 1024
    """Disk the agent's workdir may hold, in MiB (blocks allocated, checked by the daemon)."""
    disk_files: int | None = 20000
    """Files and folders the agent's workdir may hold."""
    state_value_kb: int | None = 1024
    """Largest single ``ctx.state`` value one run may write, in KiB (packed)."""
    journal_mb: int | None = 128
    """Journal bytes one run may write, in MiB (packed entries, ``ctx.state`` values included)."""
    wall_seconds: float = 900.0


@dataclass(frozen=True)
class AgentConfig:
    """One ``[agents.NAME]`` table, validated."""

    name: str
    code: Path
    entry: str
    every: float | None = None
    input: Any = None
    env: Mapping[str, str] = field(default_factory=dict)
    env_from: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    limits: Limits = Limits()
    on_crash: str = "resume"
    max_attempts: int = 3
    on_code_change: str = "fail"
    retention_days: float = 30.0
    retention_mb: float = 256.0
    enabled: bool = True
    models: tuple[str, ...] = ()
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


def _no_alerts() -> AlertsConfig:
    from corral.config.alerts import AlertsConfig  # not at the top: corral.alerts imports this module

    return AlertsConfig()


@dataclass(frozen=True)
class CorralConfig:
    """The whole file: daemon settings plus every agent."""

    path: Path | None
    home: Path
    plugins: tuple[str, ...] = ()
    max_concurrent_runs: int = 4
    max_resume_age: float = 86400.0
    grace_seconds: float = 20.0
    frame_max_bytes: int = 8 * 2**20
    log_max_bytes: int = 10 * 2**20
    log_backups: int = 5
    store_map_mb: int = 64
    max_tool_args_bytes: int = 256 * 2**10
    timezone: str | None = None
    """``[corral] timezone``: the IANA zone of calendar days (budgets) and of triggers
    without their own; None is the machine's zone (:func:`local_zone`)."""
    keep_awake: bool = True
    """``[corral] keep_awake``: hold a power assertion on macOS while any run is active."""
    limits: Limits = Limits()
    agents: Mapping[str, AgentConfig] = field(default_factory=dict)
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    budget: Budget = Budget()
    """``[budget]``: the daily caps over every agent's model calls together."""
    alerts: AlertsConfig = field(default_factory=_no_alerts)
    """``[alerts]`` and ``[metrics]``: alert routes and sinks, rules, checks, metrics (docs/alerting.md)."""
    schedule: ScheduleSettings = ScheduleSettings()
    """``[schedule]``: the webhook listener (docs/scheduling.md)."""

    @property
    def zone(self) -> dt.tzinfo:
        """``timezone`` as a tzinfo (the machine's local zone when unset)."""
        return zone_named(self.timezone)

    def workdir(self, agent: str) -> Path:
        """The agent's own working directory under the corral home."""
        return self.home / "agents" / agent

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def socket_path(self) -> Path:
        return self.home / "corral.sock"


def default_home(environ: Mapping[str, str] = os.environ) -> Path:
    """``CORRAL_HOME`` if set, else ``~/.corral``."""
    return Path(environ.get("CORRAL_HOME") or Path.home() / ".corral").expanduser()


def find_config(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the config is: ``--config``, then ``CORRAL_CONFIG``, then ``<home>/corral.toml``."""
    if explicit:
        return Path(explicit).expanduser()
    if environ.get("CORRAL_CONFIG"):
        return Path(environ["CORRAL_CONFIG"]).expanduser()
    return default_home(environ) / "corral.toml"


class _Reader:
    """Collects every problem in one pass so the operator can fix them all at once."""

    def __init__(self, path: Path | None) -> None:
        self.where = str(path) if path else "<config>"
        self.problems: list[str] = []

    def fail(self, table: str, key: str | None, message: str) -> None:
        at = f"[{table}] {key}" if key else f"[{table}]"
        self.problems.append(f"{self.where}: {at}: {message}")

    def unknown_keys(self, table: str, data: Mapping[str, Any], known: list[str]) -> None:
        for key in data:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"known keys: {', '.join(sorted(known))}"
                self.fail(table, key, f"unknown key; {hint}")

    def take(
        self, table: str, data: Mapping[str, Any], key: str, default: Any, convert: Callable[[Any], Any], fix: str
    ) -> Any:
        if key not in data:
            return default
        try:
            return convert(data[key])
        except (TypeError, ValueError) as exc:
            self.fail(table, key, f"{exc}; {fix}")
            return default


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{value!r} is not a positive integer")
    return value


def _optional_limit(value: object) -> int | None:
    if value is False or value == "none":
        return None
    return _positive_int(value)


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be more than zero")
    return seconds


def _string_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{value!r} is not a list of non-empty strings")
    return tuple(value)


def _choice(*allowed: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}")
        return str(value)

    return convert


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _zone_name(value: object) -> str:
    zone_named(value)  # type: ignore[arg-type]
    assert isinstance(value, str)
    return value


def _read_limits(r: _Reader, table: str, data: object, base: Limits) -> Limits:
    if not isinstance(data, dict):
        r.fail(table, None, "must be a table of limits")
        return base
    known = [f.name for f in fields(Limits)]
    r.unknown_keys(table, data, known)
    values: dict[str, Any] = {}
    for name in known:
        if name == "wall_seconds":
            values[name] = r.take(
                table, data, name, base.wall_seconds, _positive_duration, 'give the wall-clock limit, e.g. "10m"'
            )
        else:
            values[name] = r.take(
                table,
                data,
                name,
                getattr(base, name),
                _optional_limit,
                f'give {_LIMIT_UNITS[name]} as a positive integer, or "none" to leave it unlimited',
            )
    return Limits(**values)


_LIMIT_UNITS = {
    "address_space_mb": "the virtual memory of one process in MiB",
    "memory_mb": "the memory of the run's processes together in MiB",
    "cpu_seconds": "the CPU seconds of one process",
    "open_files": "the open descriptors of one process",
    "processes": "the number of the run's processes",
    "file_size_mb": "the size of the largest file in MiB",
    "disk_mb": "the disk the agent's workdir may hold in MiB",
    "disk_files": "the number of files and folders the agent's workdir may hold",
    "state_value_kb": "the size of the largest ctx.state value in KiB",
    "journal_mb": "the journal bytes one run may write in MiB",
}


def _read_env(r: _Reader, table: str, data: Mapping[str, Any]) -> dict[str, str]:
    env = data.get("env", {})
    if not isinstance(env, dict):
        r.fail(table, "env", 'must be a table of NAME = "value" strings')
        return {}
    out: dict[str, str] = {}
    for name, value in env.items():
        if not ENV_NAME.match(name):
            r.fail(table, f"env.{name}", "is not a valid environment variable name")
        elif name in BASE_ENV:
            r.fail(table, f"env.{name}", f"is set by corral itself ({', '.join(BASE_ENV)}); remove it")
        elif not isinstance(value, str):
            r.fail(table, f"env.{name}", f"value {value!r} must be a string; quote it")
        else:
            out[name] = value
    return out


def _read_agent(r: _Reader, name: str, data: object, base_dir: Path, limits: Limits) -> AgentConfig | None:
    table = f"agents.{name}"
    if not AGENT_NAME.match(name) or name == "corral":
        r.fail(
            table,
            None,
            "agent names use lowercase letters, digits, '-' and '_' (max 63), starting with "
            "a letter or digit; 'corral' is reserved for the daemon's own log",
        )
        return None
    if not isinstance(data, dict):
        r.fail(table, None, "must be a table")
        return None
    known = [f.name for f in fields(AgentConfig) if f.name != "name"]
    r.unknown_keys(table, data, known)
    code_raw = data.get("code")
    entry = data.get("entry")
    if not isinstance(code_raw, str) or not code_raw:
        r.fail(table, "code", 'is required: the folder the agent\'s module is imported from, e.g. code = "agents"')
        code = base_dir
    else:
        code = (base_dir / Path(code_raw).expanduser()).resolve()
        if not code.is_dir():
            r.fail(
                table,
                "code",
                f"folder {code} does not exist; create it or fix the path "
                "(relative paths start at the config file's folder)",
            )
    if not isinstance(entry, str) or not ENTRY.match(entry):
        r.fail(table, "entry", f'{entry!r} must name a function as "module:function", e.g. entry = "counter:run"')
        entry = "missing:run"
    env_from = r.take(
        table, data, "env_from", (), _string_list, "list variable names to copy from the daemon's environment"
    )
    for var in env_from:
        if not ENV_NAME.match(var) or var in BASE_ENV:
            r.fail(table, "env_from", f"{var!r} is not a variable an agent can be granted")
    return AgentConfig(
        name=name,
        code=code,
        entry=entry,
        every=r.take(table, data, "every", None, _positive_duration, 'give an interval such as "30s" or "5m"'),
        input=data.get("input"),
        env=_read_env(r, table, data),
        env_from=env_from,
        tools=r.take(table, data, "tools", (), _string_list, "list the tool names this agent may call"),
        limits=_read_limits(r, f"{table}.limits", data.get("limits", {}), limits),
        on_crash=r.take(table, data, "on_crash", "resume", _choice("resume", "fail"), "choose what a crashed run does"),
        max_attempts=r.take(table, data, "max_attempts", 3, _positive_int, "give how many times a run may be started"),
        on_code_change=r.take(
            table,
            data,
            "on_code_change",
            "fail",
            _choice("fail", "continue"),
            "choose what resuming under changed code does",
        ),
        retention_days=r.take(
            table, data, "retention_days", 30.0, _positive_number, "give how many days finished runs are kept"
        ),
        retention_mb=r.take(
            table, data, "retention_mb", 256.0, _positive_number, "give the journal size kept for this agent, in MiB"
        ),
        enabled=r.take(table, data, "enabled", True, _bool, "write enabled = true or false"),
        models=r.take(table, data, "models", (), _string_list, "list the [models.NAME] this agent may call"),
        budget=_read_agent_budget(r, table, data.get("budget")),
        guardrails=_read_agent_guardrails(r, table, data.get("guardrails")),
    )


def _read_agent_guardrails(r: _Reader, table: str, data: object) -> GuardrailConfig:
    guardrails, problems = read_guardrails(f"{r.where}: [{table}.guardrails]", data)
    r.problems += problems
    return guardrails


def _read_agent_budget(r: _Reader, table: str, data: object) -> Budget:
    budget, problems = read_budget(f"{r.where}: [{table}.budget]", data)
    r.problems += problems
    return budget


def _positive_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{value!r} is not a positive number")
    return float(value)


_DAEMON_KEYS = {
    "home": None,
    "plugins": None,
    "max_concurrent_runs": (_positive_int, "give how many runs may execute at once"),
    "max_resume_age": (_positive_duration, 'give an age such as "24h" after which unfinished runs are abandoned'),
    "grace_seconds": (_positive_duration, 'give how long SIGTERM waits for in-flight requests, e.g. "20s"'),
    "frame_max_bytes": (_positive_int, "give the largest wire frame accepted, in bytes"),
    "log_max_bytes": (_positive_int, "give the size at which a log file rotates, in bytes"),
    "log_backups": (_positive_int, "give how many rotated log files are kept"),
    "store_map_mb": (_positive_int, "give the initial LMDB map size in MiB (it grows on demand)"),
    "max_tool_args_bytes": (_positive_int, "give the largest tool-call arguments accepted, in bytes (packed)"),
    "timezone": (_zone_name, 'give an IANA time zone name such as "Europe/Paris"'),
    "keep_awake": (_bool, "give true (a Mac does not idle-sleep while runs are active) or false"),
}


def parse_config(data: Mapping[str, Any], path: Path | None, environ: Mapping[str, str] = os.environ) -> CorralConfig:
    """Validate a parsed TOML document. Raises ConfigError listing every problem."""
    r = _Reader(path)
    base_dir = path.parent.resolve() if path else Path.cwd()
    top = ["corral", "limits", "agents", "models", "budget", "alerts", "metrics", "sandbox", "schedule"]
    r.unknown_keys("top level", data, top)
    daemon = data.get("corral", {})
    if not isinstance(daemon, dict):
        r.fail("corral", None, "must be a table")
        daemon = {}
    r.unknown_keys("corral", daemon, list(_DAEMON_KEYS))
    values: dict[str, Any] = {}
    for key, spec in _DAEMON_KEYS.items():
        if spec is not None:
            convert, fix = spec
            values[key] = r.take("corral", daemon, key, getattr(CorralConfig, key), convert, fix)
    home_raw = daemon.get("home")
    if environ.get("CORRAL_HOME"):
        home = Path(environ["CORRAL_HOME"]).expanduser()
    elif isinstance(home_raw, str) and home_raw:
        home = base_dir / Path(home_raw).expanduser()
    else:
        if home_raw is not None:
            r.fail("corral", "home", 'must be a path string, e.g. home = "~/.corral"')
        home = default_home(environ)
    plugins = r.take("corral", daemon, "plugins", (), _string_list, "list plugin modules or .py files")
    plugins = tuple(str(base_dir / p) if p.endswith(".py") else p for p in plugins)
    limits = _read_limits(r, "limits", data.get("limits", {}), Limits())
    agents_raw = data.get("agents", {})
    agents: dict[str, AgentConfig] = {}
    if not isinstance(agents_raw, dict):
        r.fail("agents", None, "must be tables such as [agents.NAME]")
    else:
        for name, table in agents_raw.items():
            agent = _read_agent(r, name, table, base_dir, limits)
            if agent is not None:
                agents[name] = agent
    models: dict[str, ModelConfig] = {}
    if "models" in data:
        models, problems = read_models(r.where, data["models"], environ)
        r.problems += problems
    declared_raw = data.get("models")
    declared: dict[str, Any] = declared_raw if isinstance(declared_raw, dict) else {}
    for agent in agents.values():
        for model in agent.models:
            if model not in declared:
                known = ", ".join(sorted(declared)) or "none"
                r.fail(f"agents.{agent.name}", "models", f"{model!r} is not a [models.NAME] table; known: {known}")
    budget, problems = read_budget(f"{r.where}: [budget]", data.get("budget"), GLOBAL_BUDGET_KEYS)
    r.problems += problems
    r.problems += unpriced_cost_caps({f"{r.where}: [budget]": budget}, models)
    for agent in agents.values():
        granted = {name: models[name] for name in agent.models if name in models}
        r.problems += unpriced_cost_caps({f"{r.where}: [agents.{agent.name}.budget]": agent.budget}, granted)
    from corral.config.alerts import read_alerts  # not at the top: corral.alerts imports this module

    alerts, problems = read_alerts(r.where, data.get("alerts"), data.get("metrics"), set(agents), environ)
    r.problems += problems
    agents, problems = read_isolation(r.where, data, agents, base_dir, home.resolve())
    r.problems += problems
    from corral.config.schedule import read_schedules  # not at the top: it imports this module

    agents, schedule, problems = read_schedules(r.where, data, agents)
    r.problems += problems
    agents, problems = read_tool_settings(r.where, data, agents)
    r.problems += problems
    if r.problems:
        raise ConfigError(r.problems)
    return CorralConfig(
        path=path,
        home=home.resolve(),
        plugins=plugins,
        limits=limits,
        agents=agents,
        models=models,
        budget=budget,
        alerts=alerts,
        schedule=schedule,
        **values,
    )


def load_config(path: Path, environ: Mapping[str, str] = os.environ) -> CorralConfig:
    """Read and validate one config file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: no such config file; create it (see examples/corral.toml) or pass --config"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}; fix the syntax at that line"]) from None
    return parse_config(data, path.resolve(), environ)
