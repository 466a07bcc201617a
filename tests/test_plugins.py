"""Plugins found three ways, registered like built-ins, and every hook called for real."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from corral.config import load_config
from corral.daemon.host import host
from corral.pluginmanager import BUILTINS, load_plugins

LISTENER = '''
import json, os
import corral

OUT = {out!r}

def _write(kind, **data):
    with open(OUT, "a") as f:
        f.write(json.dumps({{"hook": kind, **data}}, default=str) + "\\n")

@corral.hookimpl
def corral_run_started(run):
    _write("started", run=run["id"], attempt=run["attempt"])

@corral.hookimpl
def corral_step_done(run, step):
    _write("step", run=run["id"], seq=step["seq"], name=step["name"], replayed=step["replayed"])

@corral.hookimpl
def corral_run_finished(run):
    _write("finished", run=run["id"], state=run["state"])

@corral.tool
def shout(text: str) -> str:
    """Upper-case a text.

    Args:
        text: What to shout.
    """
    return text.upper()

@corral.hookimpl
def corral_register_tools(register):
    register(shout)
'''


def _entry_point_package(site: Path) -> None:
    (site / "corral_demo_plugin.py").write_text(
        textwrap.dedent('''
        import corral

        @corral.tool(idempotent=True)
        def whisper(text: str) -> str:
            """Lower-case a text."""
            return text.lower()

        @corral.hookimpl
        def corral_register_tools(register):
            register(whisper)
    ''')
    )
    dist = site / "corral_demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: corral-demo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[corral]\ndemo = corral_demo_plugin\n")


def test_plugins_come_from_builtins_entry_points_config_and_plugin_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _entry_point_package(site)
    monkeypatch.syspath_prepend(str(site))
    listed = tmp_path / "listed.py"
    listed.write_text(LISTENER.format(out=str(tmp_path / "events.jsonl")))
    folder = tmp_path / "plugin-folder"
    folder.mkdir()
    (folder / "dropped.py").write_text(
        "import corral\n@corral.tool\ndef echo(text: str) -> str:\n    return text\n"
        "@corral.hookimpl\ndef corral_register_tools(register):\n    register(echo)\n"
    )
    plugins = load_plugins([str(listed)], folder)
    assert plugins.failures == []
    names = plugins.names()
    assert set(BUILTINS) <= set(names)
    assert "entrypoint:demo" in names and str(listed) in names and str(folder / "dropped.py") in names
    assert {"append_line", "whisper", "shout", "echo"} <= set(plugins.tools)
    assert plugins.tools["whisper"].plugin == "entrypoint:demo"
    assert plugins.tools["append_line"].plugin == "corral.plugins.example_tools"


def test_a_broken_plugin_is_skipped_and_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    misspelt = tmp_path / "misspelt.py"
    misspelt.write_text("import corral\n@corral.hookimpl\ndef corral_register_tool(register):\n    pass\n")
    warnings: list[str] = []
    plugins = load_plugins([str(broken), str(misspelt)], None, warn=warnings.append)
    assert any("broken.py failed to load" in w and "boom at import" in w for w in warnings)
    assert any("corral_register_tool" in w for w in warnings), "a misspelt hook fails loudly"
    assert "append_line" in plugins.tools, "the others still load"


def test_two_plugins_registering_one_tool_name_is_an_error_naming_both(tmp_path: Path) -> None:
    clash = tmp_path / "clash.py"
    clash.write_text(
        "import corral\n@corral.tool\ndef append_line(x: str) -> str:\n    return x\n"
        "@corral.hookimpl\ndef corral_register_tools(register):\n    register(append_line)\n"
    )
    plugins = load_plugins([str(clash)])
    assert any("'append_line' is registered by both" in f and "clash.py" in f for f in plugins.failures)


def test_lifecycle_hooks_and_tool_hook_are_called_in_a_real_run(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    listener = tmp_path / "listener.py"
    listener.write_text(LISTENER.format(out=str(events)))
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "loud.py").write_text("def run(ctx):\n    return ctx.tool('shout', text=ctx.input)\n")
    (tmp_path / "corral.toml").write_text(
        f'[corral]\nplugins = ["{listener}"]\n[agents.loud]\ncode = "agents"\nentry = "loud:run"\ntools = ["shout"]\n'
    )
    config = load_config(tmp_path / "corral.toml")
    with host(config, echo=None) as composed:
        engine = composed.engine

        async def go() -> dict:
            run = await engine.create_run("loud", "hi there")
            return await engine.execute(run["id"])

        final = asyncio.run(go())
    assert final["state"] == "succeeded" and final["result"] == "HI THERE"
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["hook"] for e in seen] == ["started", "step", "finished"]
    assert seen[1]["name"] == "shout" and seen[1]["replayed"] is False
    assert seen[2]["state"] == "succeeded"


def test_an_entry_point_tool_runs_in_the_agents_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _entry_point_package(site)
    monkeypatch.syspath_prepend(str(site))
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "quiet.py").write_text("def run(ctx):\n    return ctx.tool('whisper', text='HUSH Now')\n")
    (tmp_path / "corral.toml").write_text('[agents.quiet]\ncode = "agents"\nentry = "quiet:run"\ntools = ["whisper"]\n')
    with host(load_config(tmp_path / "corral.toml"), echo=None) as composed:
        engine = composed.engine
        assert engine.plugins.entry_points == [("demo", "corral_demo_plugin")]

        async def go() -> dict:
            run = await engine.create_run("quiet")
            return await engine.execute(run["id"])

        final = asyncio.run(go())
    assert final["state"] == "succeeded" and final["result"] == "hush now", final


def test_the_agents_process_imports_only_the_plugins_of_its_granted_tools(tmp_path: Path) -> None:
    """Spawn time and an idle agent's memory stay small: no other plugin, and not the
    daemon's config machinery, is imported in the agent's process."""
    listener = tmp_path / "listener.py"
    listener.write_text(LISTENER.format(out=str(tmp_path / "events.jsonl")))
    unused = tmp_path / "unused.py"
    unused.write_text(
        "import corral\n@corral.tool\ndef spare(x: str) -> str:\n    return x\n"
        "@corral.hookimpl\ndef corral_register_tools(register):\n    register(spare)\n"
    )
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "loud.py").write_text(
        "import sys\n"
        "def run(ctx):\n"
        "    loaded = sorted(m for m in sys.modules if m.startswith(('corral.plugins.', 'corral_dropin')))\n"
        "    config = 'corral.config' in sys.modules\n"
        "    return {'said': ctx.tool('shout', text='hi'), 'plugins': loaded, 'config': config}\n"
    )
    (tmp_path / "corral.toml").write_text(
        f'[corral]\nplugins = ["{listener}", "{unused}"]\n'
        '[agents.loud]\ncode = "agents"\nentry = "loud:run"\ntools = ["shout"]\n'
    )
    with host(load_config(tmp_path / "corral.toml"), echo=None) as composed:
        engine = composed.engine
        assert {"spare", "shout", "append_line"} <= set(engine.plugins.tools), "the daemon loads every plugin"

        async def go() -> dict:
            run = await engine.create_run("loud")
            return await engine.execute(run["id"])

        final = asyncio.run(go())
    assert final["state"] == "succeeded", final
    assert final["result"]["said"] == "HI"
    assert final["result"]["plugins"] == ["corral_dropin_listener"]
    assert final["result"]["config"] is False


def test_a_tool_from_the_homes_plugins_folder_runs_in_the_agents_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``<home>/plugins`` is the one folder of the home an agent's sandbox holds: the tool's
    module is imported there, while the rest of the home stays out of sight."""
    home = tmp_path / "home"
    monkeypatch.setenv("CORRAL_HOME", str(home))
    (home / "plugins").mkdir(parents=True)
    (home / "plugins" / "echoes.py").write_text(
        "import corral\n@corral.tool\ndef echo(text: str) -> str:\n    return text * 2\n"
        "@corral.hookimpl\ndef corral_register_tools(register):\n    register(echo)\n"
    )
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "caller.py").write_text(
        "import os\n"
        "def run(ctx):\n"
        "    try:\n"
        "        seen = sorted(os.listdir(ctx.input['home']))\n"
        "    except OSError as error:\n"
        "        seen = type(error).__name__\n"
        "    return {'echo': ctx.tool('echo', text='ab'), 'home': seen}\n"
    )
    (tmp_path / "corral.toml").write_text('[agents.caller]\ncode = "agents"\nentry = "caller:run"\ntools = ["echo"]\n')
    with host(load_config(tmp_path / "corral.toml"), echo=None) as composed:
        engine = composed.engine

        async def go() -> dict:
            run = await engine.create_run("caller", {"home": str(home)})
            return await engine.execute(run["id"])

        final = asyncio.run(go())
    assert final["state"] == "succeeded", final.get("error")
    assert final["result"]["echo"] == "abab"
    assert final["result"]["home"] in ("PermissionError", ["agents", "plugins"]), final["result"]
