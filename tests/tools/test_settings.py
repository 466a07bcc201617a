"""Tool settings in config, checked against the tools once plugins are loaded; the argument cap."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import CorralConfig, load_config
from corral.config.check import check_config, settings_problems
from corral.errors import ConfigError
from corral.pluginmanager import load_plugins
from corral.tools import welcome_entry

HEAD = """
[corral]
max_tool_args_bytes = 4096

[agents.web]
code = "agents"
entry = "web:run"
tools = ["fetch_url", "read_file", "search_files"]
"""


def load(tmp_path: Path, text: str) -> CorralConfig:
    (tmp_path / "agents").mkdir(exist_ok=True)
    (tmp_path / "agents" / "web.py").write_text("def run(ctx):\n    return 1\n")
    path = tmp_path / "corral.toml"
    path.write_text(text)
    return load_config(path, {"CORRAL_HOME": str(tmp_path / "home")})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def test_settings_and_the_argument_cap_load(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        HEAD
        + """
[agents.web.tool_settings.fetch_url]
allow_hosts = ["example.com", "*.example.org"]
timeout = 5
""",
    )
    assert config.max_tool_args_bytes == 4096
    assert config.agents["web"].tool_settings == {
        "fetch_url": {"allow_hosts": ["example.com", "*.example.org"], "timeout": 5}
    }
    assert settings_problems(config, load_plugins().tools) == []


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, HEAD.replace("max_tool_args_bytes = 4096", ""))
    assert config.max_tool_args_bytes == 256 * 1024
    assert config.agents["web"].tool_settings == {}


def test_bad_shapes_are_config_errors_naming_the_table(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        HEAD.replace("4096", "0")
        + """
[agents.web.tool_settings]
fetch_ur = { allow_hosts = ["x"] }
read_file = 3
run_command = { }
""",
    )
    text = "\n".join(found)
    assert "[corral] max_tool_args_bytes: 0 is not a positive integer" in text
    assert (
        "[agents.web.tool_settings] fetch_ur: settings for a tool agent 'web' is not granted; did you mean 'fetch_url'?"
        in text
    )
    assert "[agents.web.tool_settings] read_file: must be a table of settings" in text
    assert (
        "[agents.web.tool_settings] run_command: settings for a tool agent 'web' is not granted; add the tool" in text
    )
    assert problems(tmp_path, HEAD.replace("tools = [", "tool_settings = 5\ntools = [")) == [
        f"{tmp_path / 'corral.toml'}: [agents.web.tool_settings]: must be a table of tables, one per tool, e.g. "
        "[agents.web.tool_settings.TOOL]"
    ]


def test_contents_are_checked_against_the_tools_typeddict(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        HEAD
        + """
[agents.web.tool_settings.fetch_url]
allow_hosts = "example.com"
timeot = 5

[agents.web.tool_settings.read_file]
max = 1
""",
    )
    found = check_config(config)
    where = f"{tmp_path / 'corral.toml'}: [agents.web.tool_settings"
    assert (
        f'{where}.fetch_url] allow_hosts: "example.com" is not of type "array"; '
        "see the tool's documentation (docs/tools.md)" in found
    )
    assert any(p.startswith(f"{where}.fetch_url] table: ") and "timeot" in p for p in found)
    assert f"{where}.read_file]: tool 'read_file' (corral.plugins.files) takes no settings; remove the table" in found


def test_a_tool_that_needs_settings_without_them_is_reported(tmp_path: Path) -> None:
    found = settings_problems(load(tmp_path, HEAD), load_plugins().tools)
    assert found == [
        f"{tmp_path / 'corral.toml'}: [agents.web.tool_settings.fetch_url]: tool 'fetch_url' needs settings "
        "allow_hosts; add the table"
    ]


def test_welcome_carries_settings_only_to_tools_that_take_them(tmp_path: Path) -> None:
    tools = load_plugins().tools
    settings = {"fetch_url": {"allow_hosts": ["a.test"]}}
    fetch = welcome_entry(tools["fetch_url"], settings, {})
    assert fetch["settings"] == {"allow_hosts": ["a.test"]}
    assert {k: v for k, v in fetch.items() if k != "listed"} == {
        "takes_key": False,
        "plugin": "corral.plugins.fetch",
        "settings": {"allow_hosts": ["a.test"]},
    }
    assert fetch["listed"]["parameters"] == tools["fetch_url"].parameters and fetch["listed"]["read_only"]
    assert welcome_entry(tools["search_files"], settings, {})["settings"] == {}
    assert "settings" not in welcome_entry(tools["write_file"], settings, {})
