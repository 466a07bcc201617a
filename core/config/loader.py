"""Load ``corral.toml`` once into typed, validated objects.

Everything the daemon reads from config is checked here, at load, so a bad value is
reported with its file, table and key before any agent starts, and the running daemon
can keep its last good config when a reload fails. The loader reads ``[corral]`` itself
and hands every other table to its section's module, all reporting into one
:class:`~corral.config.problems.Problems`; then it checks what spans sections (an agent's
models exist, a webhook trigger has a port, a cost cap has prices).
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from corral.config.agents import AgentConfig, Limits, read_agents, read_limits
from corral.config.alerts import AlertsConfig, read_alerts
from corral.config.budget import Budget, GlobalBudgetKeys, read_budget, unpriced_cost_caps
from corral.config.console import ConsoleConfig, read_console
from corral.config.kinds import Flag, Key, PositiveInt, PositiveSeconds, Text, Texts, Zone
from corral.config.mcp import McpServer, grant_problems, read_mcp
from corral.config.metrics import read_metrics
from corral.config.models import ModelConfig, read_models
from corral.config.problems import Problems, file_name, table_keys
from corral.config.sandbox import home_problems, read_sandbox
from corral.config.schedule import ScheduleSettings, read_schedule_settings
from corral.config.telemetry import TelemetryConfig, read_telemetry
from corral.config.tools import ToolConfig, read_tools
from corral.config.units import zone_named
from corral.errors import ConfigError
from corral.sandbox.spec import SandboxPolicy

TABLES = (
    "corral",
    "limits",
    "agents",
    "models",
    "budget",
    "alerts",
    "metrics",
    "sandbox",
    "schedule",
    "telemetry",
    "console",
    "mcp",
    "tools",
)
"""The top-level tables of the file."""


@dataclass(frozen=True)
class CorralConfig:
    """The whole file: the daemon's own ``[corral]`` keys, declared here, plus every section."""

    path: Path | None
    home: Path
    plugins: Annotated[Texts, Key("list plugin modules or .py files")] = ()
    """Plugin modules, and ``.py`` files (made absolute from the config file's folder)."""
    max_concurrent_runs: Annotated[PositiveInt, Key("give how many runs may execute at once")] = 4
    max_resume_age: Annotated[
        PositiveSeconds, Key('give an age such as "24h" after which unfinished runs are abandoned')
    ] = 86400.0
    grace_seconds: Annotated[PositiveSeconds, Key('give how long SIGTERM waits for in-flight requests, e.g. "20s"')] = (
        20.0
    )
    frame_max_bytes: Annotated[PositiveInt, Key("give the largest wire frame accepted, in bytes")] = 8 * 2**20
    log_max_bytes: Annotated[PositiveInt, Key("give the size at which a log file rotates, in bytes")] = 10 * 2**20
    log_backups: Annotated[PositiveInt, Key("give how many rotated log files are kept")] = 5
    store_map_mb: Annotated[PositiveInt, Key("give the initial LMDB map size in MiB (it grows on demand)")] = 64
    max_tool_args_bytes: Annotated[
        PositiveInt, Key("give the largest tool-call arguments accepted, in bytes (packed)")
    ] = 256 * 2**10
    timezone: Annotated[Zone, Key('give an IANA time zone name such as "Europe/Paris"')] | None = None
    """``[corral] timezone``: the IANA zone of calendar days (budgets) and of triggers
    without their own; None is the machine's zone (:func:`~corral.config.units.local_zone`)."""
    keep_awake: Annotated[Flag, Key("give true (a Mac does not idle-sleep while runs are active) or false")] = True
    """``[corral] keep_awake``: hold a power assertion on macOS while any run is active."""
    limits: Limits = Limits()
    agents: Mapping[str, AgentConfig] = field(default_factory=dict)
    models: Mapping[str, ModelConfig] = field(default_factory=dict)
    budget: Budget = Budget()
    """``[budget]``: the daily caps over every agent's model calls together."""
    alerts: AlertsConfig = AlertsConfig()
    """``[alerts]`` and ``[metrics]``: alert routes and sinks, rules, checks, metrics (docs/alerting.md)."""
    schedule: ScheduleSettings = ScheduleSettings()
    """``[schedule]``: the webhook listener (docs/scheduling.md)."""
    telemetry: TelemetryConfig = TelemetryConfig()
    """``[telemetry]``: OTLP export of traces and metrics, off by default (docs/telemetry.md)."""
    console: ConsoleConfig = ConsoleConfig()
    """``[console]``: the web dashboard (docs/console.md)."""
    mcp: Mapping[str, McpServer] = field(default_factory=dict)
    """``[mcp.NAME]``: MCP servers whose tools agents may be granted (docs/tools.md)."""
    tools: Mapping[str, ToolConfig] = field(default_factory=dict)
    """``[tools.NAME]``: each tool's retries and circuit breaker (docs/tools.md)."""

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


def parse_config(data: Mapping[str, Any], path: Path | None, environ: Mapping[str, str] = os.environ) -> CorralConfig:
    """Validate a parsed TOML document. Raises ConfigError listing every problem."""
    p = Problems(file_name(path))
    base_dir = path.parent.resolve() if path else Path.cwd()
    p.unknown("top level", data, TABLES)
    daemon = p.table("corral", data.get("corral"))
    p.unknown("corral", daemon, ["home", *table_keys(CorralConfig)])
    values = p.keys("corral", daemon, CorralConfig)
    plugins = values.pop("plugins", ())
    home = _home(p, daemon, base_dir, environ).resolve()
    limits = read_limits(p, "limits", data.get("limits"), Limits())
    sandbox = read_sandbox(p, "sandbox", data.get("sandbox"), SandboxPolicy(), base_dir)
    home_problems(p, "sandbox", sandbox, home)
    agents = read_agents(p, data.get("agents"), base_dir, limits, sandbox, home)
    models = read_models(p, data["models"], environ) if "models" in data else {}
    budget = read_budget(p, "budget", data.get("budget"), GlobalBudgetKeys)
    metrics = read_metrics(p, data.get("metrics"))
    alerts = read_alerts(p, data.get("alerts"), set(agents), environ, metrics)
    schedule = read_schedule_settings(p, data.get("schedule"))
    telemetry = read_telemetry(p, data.get("telemetry"), environ)
    console = read_console(p, data.get("console"))
    mcp = read_mcp(p, data.get("mcp"))
    tools = read_tools(p, data.get("tools"))
    _across_sections(p, data.get("models"), agents, models, budget, schedule)
    for agent in agents.values():
        grant_problems(p, f"agents.{agent.name}", agent.tools, mcp, agent.sandbox)
    _console_unreachable(p, console, agents, data.get("agents"))
    p.check()
    return CorralConfig(
        path=path,
        home=home,
        plugins=tuple(str(base_dir / name) if name.endswith(".py") else name for name in plugins),
        limits=limits,
        agents=agents,
        models=models,
        budget=budget,
        alerts=alerts,
        schedule=schedule,
        telemetry=telemetry,
        console=console,
        mcp=mcp,
        tools=tools,
        **values,
    )


def _across_sections(
    p: Problems,
    written_models: object,
    agents: Mapping[str, AgentConfig],
    models: Mapping[str, ModelConfig],
    budget: Budget,
    schedule: ScheduleSettings,
) -> None:
    """What no one section can check: each agent's models are tables of ``[models]``, a
    cost cap has prices for every model it covers, a webhook trigger has a listener."""
    declared = written_models if isinstance(written_models, Mapping) else {}
    unpriced_cost_caps(p, "budget", budget, models)
    for agent in agents.values():
        section = f"agents.{agent.name}"
        for model in agent.models:
            if model not in declared:
                known = ", ".join(sorted(declared)) or "none"
                p.fail(section, "models", f"{model!r} is not a [models.NAME] table; known: {known}")
        granted = {name: models[name] for name in agent.models if name in models}
        unpriced_cost_caps(p, f"{section}.budget", agent.budget, granted)
        if schedule.webhook_port is None and any(t.kind == "webhook" for t in agent.triggers):
            p.fail(
                section,
                "triggers",
                "there is a webhook trigger but [schedule] webhook_port is not set; "
                "set it to the port to listen on at 127.0.0.1",
            )


def _console_unreachable(
    p: Problems, console: ConsoleConfig, agents: Mapping[str, AgentConfig], written_agents: object
) -> None:
    """No agent's network list names the console's port: Landlock limits an agent's
    connections by port, not host, so ``example.com:8787`` would also reach the console
    listening at 127.0.0.1:8787."""
    _, port = console.address
    if not console.enabled or port == 0:
        return
    written = written_agents if isinstance(written_agents, Mapping) else {}
    for agent in agents.values():
        for entry in agent.sandbox.endpoints:
            if entry.port != port:
                continue
            table = written.get(agent.name)
            own = (
                isinstance(table, Mapping)
                and isinstance(table.get("sandbox"), Mapping)
                and "network" in table["sandbox"]
            )
            p.fail(
                f"agents.{agent.name}.sandbox" if own else "sandbox",
                "network",
                f"agent {agent.name!r} is granted '{entry.host}:{entry.port}', the console's port "
                f"([console] listen = {console.listen!r}): the sandbox limits connections by port, not host, so the "
                "agent could reach the console; move the console to another port ([console] listen) or drop the entry",
            )


def _home(p: Problems, daemon: Mapping[str, Any], base_dir: Path, environ: Mapping[str, str]) -> Path:
    """``$CORRAL_HOME``, else ``[corral] home`` (relative to the config file), else the default."""
    written = p.value("corral", daemon, "home", Text, None, 'give a path, e.g. home = "~/.corral"')
    if environ.get("CORRAL_HOME"):
        return Path(environ["CORRAL_HOME"]).expanduser()
    if written is not None:
        return base_dir / Path(written).expanduser()
    return default_home(environ)


def load_config(path: Path, environ: Mapping[str, str] = os.environ) -> CorralConfig:
    """Read and validate one config file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: no such config file; `corral init` writes a commented one there, or pass --config FILE"]
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
