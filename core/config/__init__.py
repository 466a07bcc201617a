"""``corral.toml``, read once into typed, validated objects (docs/operating.md).

The loader (:mod:`corral.config.loader`) reads the file and hands each table to the
module of its section; every problem found on the way is reported at once, naming the
file, table, key and fix. The names here are the ones the rest of corral and plugin
authors use.
"""

from corral.config.loader import (
    BASE_ENV,
    ENV_NAME,
    AgentConfig,
    CorralConfig,
    Limits,
    default_home,
    find_config,
    load_config,
    parse_config,
)
from corral.config.units import local_zone, parse_duration, zone_named

__all__ = [
    "BASE_ENV",
    "ENV_NAME",
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
