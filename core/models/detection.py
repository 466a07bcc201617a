"""Find a model for the example agents without any config: an API key in the environment, or a local Ollama.

Tried in order: ``ANTHROPIC_API_KEY``, ``OPENAI_API_KEY``, then Ollama answering
``GET /api/tags`` at ``ollama_url`` within ``timeout``. When nothing is found the
result says exactly what to add to ``corral.toml``. Only the given mapping is read, never
``os.environ`` itself, so the daemon decides what detection may see.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import msgspec

from corral.models.endpoint import Endpoint, Prices
from corral.secrets import Secret

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
OPENAI_MODEL = "gpt-4.1-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"

# List prices (USD per million tokens) of the default models when this was written;
# an operator who cares configures [models.default.prices] from the provider's page.
_OPENAI_PRICES = Prices.per_million("0.40", "1.60", cache_read="0.10")
_ANTHROPIC_PRICES = Prices.per_million("1", "5", cache_read="0.10", cache_write="1.25")

_SNIPPET = (
    '[models.default] with provider = "openai" (or "anthropic"), base_url = "https://api.openai.com/v1" '
    '(Ollama: "http://127.0.0.1:11434/v1"), model = "gpt-4.1-mini" and api_key_env = "OPENAI_API_KEY" '
    "(the variable that holds the key); docs/models.md has the details"
)
"""The table to add, on one line: the message is shown in log lines and one-line errors,
where a newline would be escaped."""


@dataclass(frozen=True, slots=True)
class Undetected:
    """No model could be found; ``message`` says what was tried and the config to add."""

    message: str


class _Model(msgspec.Struct):
    name: str


class _Tags(msgspec.Struct):
    models: list[_Model]


async def detect(
    env: Mapping[str, str],
    *,
    name: str = "default",
    ollama_url: str = DEFAULT_OLLAMA_URL,
    timeout: float = 0.5,
) -> Endpoint | Undetected:
    """An endpoint called ``name`` for the first model found, or :class:`Undetected` saying how to add one."""
    anthropic = env.get("ANTHROPIC_API_KEY", "").strip()
    if anthropic:
        return Endpoint(
            name=name,
            provider="anthropic",
            base_url="https://api.anthropic.com",
            model=ANTHROPIC_MODEL,
            api_key=Secret(anthropic, "ANTHROPIC_API_KEY"),
            key_source="the environment variable ANTHROPIC_API_KEY",
            prices=_ANTHROPIC_PRICES,
        )
    openai = env.get("OPENAI_API_KEY", "").strip()
    if openai:
        return Endpoint(
            name=name,
            provider="openai",
            base_url="https://api.openai.com/v1",
            model=OPENAI_MODEL,
            api_key=Secret(openai, "OPENAI_API_KEY"),
            key_source="the environment variable OPENAI_API_KEY",
            prices=_OPENAI_PRICES,
        )
    found = await _ollama_model(ollama_url, timeout)
    if isinstance(found, Undetected):
        return found
    return Endpoint(
        name=name,
        provider="openai",
        base_url=ollama_url.rstrip("/") + "/v1",
        model=found,
        prices=Prices.free(),
    )


async def _ollama_model(url: str, timeout: float) -> str | Undetected:
    probe = url.rstrip("/") + "/api/tags"
    try:
        # trust_env=False: a proxy configured for the internet must not swallow a loopback probe
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            answer = await client.get(probe)
    except httpx.HTTPError as exc:
        return _not_configured(f"nothing answered at {probe} ({type(exc).__name__})")
    if answer.status_code != 200:
        return _not_configured(f"{probe} answered HTTP {answer.status_code}, so it is not Ollama")
    try:
        tags = msgspec.json.decode(answer.content, type=_Tags)
    except msgspec.DecodeError:
        return _not_configured(f"{probe} did not answer like Ollama")
    if not tags.models:
        return _not_configured(f"Ollama at {url} has no models; pull one with `ollama pull llama3.2`")
    return tags.models[0].name


def _not_configured(ollama: str) -> Undetected:
    return Undetected(
        "no model endpoint is configured: neither ANTHROPIC_API_KEY nor OPENAI_API_KEY is set and "
        f"{ollama}. Set one of those variables, start Ollama, or add to corral.toml {_SNIPPET}"
    )
