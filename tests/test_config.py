"""Config is validated once, at load, with messages naming file, table, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import Limits, load_config, parse_duration
from corral.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "agents").mkdir(exist_ok=True)
    path = tmp_path / "corral.toml"
    path.write_text(text)
    return path


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), {"CORRAL_HOME": str(tmp_path / "home")})
    return info.value.problems


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(5, 5.0), (2.5, 2.5), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0), ("2d", 172800.0), ("250ms", 0.25)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "5 weeks", -1, True, "1x"])
def test_bad_durations_say_how_to_write_one(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_a_full_config_loads_into_typed_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[corral]
max_concurrent_runs = 2
max_resume_age = "12h"
plugins = ["extra.py", "some.module"]
[limits]
memory_mb = 256
cpu_seconds = "none"
[agents.a]
code = "agents"
entry = "a:run"
every = "30s"
env = { FOO = "bar" }
env_from = ["API_TOKEN"]
tools = ["append_line"]
[agents.a.limits]
wall_seconds = "2m"
""",
    )
    config = load_config(path, {"CORRAL_HOME": str(tmp_path / "home")})
    agent = config.agents["a"]
    assert config.max_resume_age == 43200 and config.max_concurrent_runs == 2
    assert config.plugins == (str(tmp_path / "extra.py"), "some.module")
    assert agent.every == 30 and agent.env == {"FOO": "bar"} and agent.env_from == ("API_TOKEN",)
    assert agent.limits == Limits(memory_mb=256, cpu_seconds=None, wall_seconds=120.0)
    assert agent.code == (tmp_path / "agents").resolve()
    assert config.workdir("a") == (tmp_path / "home" / "agents" / "a").resolve()


def test_home_comes_from_env_then_config_then_default(tmp_path: Path) -> None:
    path = _write(tmp_path, '[corral]\nhome = "state"\n')
    assert load_config(path, {"CORRAL_HOME": str(tmp_path / "env")}).home == (tmp_path / "env").resolve()
    assert load_config(path, {}).home == (tmp_path / "state").resolve()
    assert load_config(_write(tmp_path, ""), {}).home == (Path.home() / ".corral").resolve()


def test_every_problem_is_reported_at_once_with_file_key_and_fix(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """
[corral]
max_concurent_runs = 2
grace_seconds = "soon"
[agents.Bad_Name]
code = "agents"
[agents.ok]
code = "missing-folder"
entry = "no colon"
every = 0
env = { PATH = "/evil", COUNT = 3 }
limits = { memory_mb = -5, wall_secs = 3 }
""",
    )
    text = "\n".join(problems)
    where = str(tmp_path / "corral.toml")
    assert all(p.startswith(where + ": [") for p in problems)
    assert "[corral] max_concurent_runs: unknown key; did you mean 'max_concurrent_runs'?" in text
    assert "[corral] grace_seconds: 'soon' is not a duration" in text
    assert "[agents.Bad_Name]: agent names use lowercase" in text
    assert "[agents.ok] code: folder" in text and "does not exist" in text
    assert "[agents.ok] entry: 'no colon' must name a function" in text
    assert "[agents.ok] every: must be more than zero" in text
    assert "[agents.ok] env.PATH: is set by corral itself" in text
    assert "[agents.ok] env.COUNT: value 3 must be a string; quote it" in text
    assert "[agents.ok.limits] memory_mb: -5 is not a positive integer" in text
    assert "[agents.ok.limits] wall_secs: unknown key; did you mean 'wall_seconds'?" in text


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, "[corral\n")
    assert "not valid TOML" in problem and "fix the syntax" in problem
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_the_daemon_name_is_reserved(tmp_path: Path) -> None:
    [problem] = _problems(tmp_path, '[agents.corral]\ncode = "agents"\nentry = "a:run"\n')
    assert "'corral' is reserved" in problem


def test_the_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "corral.toml"
    config = load_config(example, {"CORRAL_HOME": "/tmp/unused"})
    assert sum(1 for a in config.agents.values() if a.every) >= 2


def test_quota_limits_have_defaults_and_accept_none_and_per_agent_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[limits]
disk_mb = 50
journal_mb = "none"
[agents]
a = { code = "agents", entry = "a:run" }
b = { code = "agents", entry = "b:run", limits = { disk_files = 100, state_value_kb = false, disk_mb = "none" } }
""",
    )
    config = load_config(path, {"CORRAL_HOME": str(tmp_path / "home")})
    default = Limits()
    assert (default.disk_mb, default.disk_files, default.state_value_kb, default.journal_mb) == (1024, 20000, 1024, 128)
    a, b = config.agents["a"].limits, config.agents["b"].limits
    assert (a.disk_mb, a.disk_files, a.state_value_kb, a.journal_mb) == (50, 20000, 1024, None)
    assert (b.disk_mb, b.disk_files, b.state_value_kb, b.journal_mb) == (None, 100, None, None)


def test_bad_quota_limits_name_the_key_and_its_unit(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """
[limits]
disk_mb = 0
disk_files = "lots"
journal_gb = 1
[agents]
a = { code = "agents", entry = "a:run", limits = { state_value_kb = 1.5 } }
""",
    )
    text = "\n".join(problems)
    assert "[limits] disk_mb: 0 is not a positive integer; give the disk the agent's workdir may hold in MiB" in text
    assert "[limits] disk_files: 'lots' is not a positive integer" in text and "files and folders" in text
    assert "[limits] journal_gb: unknown key; did you mean 'journal_mb'?" in text
    assert "[agents.a.limits] state_value_kb: 1.5 is not a positive integer" in text
    assert 'or "none" to leave it unlimited' in text


def test_the_machines_zone_keeps_its_daylight_saving_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from corral.config import local_zone

    monkeypatch.setenv("TZ", "Europe/Paris")
    zone = local_zone()
    winter, summer = dt.datetime(2027, 1, 15, 12, tzinfo=zone), dt.datetime(2027, 7, 15, 12, tzinfo=zone)
    assert winter.utcoffset() == dt.timedelta(hours=1) and summer.utcoffset() == dt.timedelta(hours=2)
    monkeypatch.delenv("TZ")
    assert local_zone().utcoffset(dt.datetime(2027, 1, 15)) is not None, "/etc/localtime is read as a zone"
