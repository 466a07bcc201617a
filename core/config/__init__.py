"""``corral.toml``, read once into typed, validated objects (docs/operating.md).

The loader (:mod:`corral.config.loader`) reads ``[corral]`` and hands every other table
to the module of its section (``agents``, ``models``, ``budget``, ``guardrails``,
``schedule``, ``sandbox``, ``tools``, ``alerts``, ``metrics``, ``console``). Each section declares its
keys with the kinds of :mod:`corral.config.kinds` (a positive integer, a duration, ...,
each checked and worded once) and reports into the one collector,
:class:`corral.config.problems.Problems`, so every problem of a file is named at once
with its file, table, key and fix. A plugin's own table (an alert sink's) is read with
the same collector through :class:`corral.config.settings.Settings`. ``corral check``
(:mod:`corral.config.check`) goes further once plugins are loaded.

The sections never import the loader, nor this package's names: the loader is made of
them (a test checks the import graph).
"""

from corral.config.agents import AgentConfig, Limits
from corral.config.loader import CorralConfig, default_home, find_config, load_config, parse_config
from corral.config.units import local_zone, parse_duration, zone_named

__all__ = [
    "AgentConfig",
    "CorralConfig",
    "Limits",
    "default_home",
    "find_config",
    "load_config",
    "local_zone",
    "parse_config",
    "parse_duration",
    "zone_named",
]
