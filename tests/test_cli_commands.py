"""A plugin adds a `corral` command; it cannot take a built-in command's name."""

from __future__ import annotations

from corral.testing import CorralProject

PLUGIN = """
import corral


def add_commands(sub, common):
    hello = sub.add_parser("hello", parents=[common], help="say hello")
    hello.add_argument("name")
    hello.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)


def clash(sub, common):
    sub.add_parser("status", parents=[common], help="take over status")


@corral.hookimpl
def corral_register_commands(register):
    register(add_commands)
    register(clash)
"""


def test_a_drop_in_plugin_adds_a_command_and_cannot_replace_one(corral_project: CorralProject) -> None:
    plugin = corral_project.root / "hello_plugin.py"
    plugin.write_text(PLUGIN)
    corral_project.corral["plugins"] = [str(plugin)]
    corral_project.write()
    result = corral_project.cli("hello", "world")
    assert result.returncode == 0 and result.stdout == "hello world\n", result.stderr
    assert "adds a command 'status', which corral already has" in result.stderr
    assert "hello" in corral_project.cli("--help").stdout
    status = corral_project.cli("status")
    assert status.returncode == 4 and "no store" in status.stderr, "the built-in status is untouched"
