"""The built-in model providers, registered like any plugin's: OpenAI-compatible Chat
Completions (OpenAI, Ollama, vLLM, llama.cpp server, LM Studio, OpenRouter) and Anthropic
Messages. Imported inside the hook, so an agent's process never loads the adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import corral


@corral.hookimpl
def corral_register_model_providers(register: Callable[[Any], None]) -> None:
    from corral.models.anthropic import AnthropicAdapter
    from corral.models.openai import OpenAIAdapter

    register(OpenAIAdapter())
    register(AnthropicAdapter())
