"""The built-in model providers, registered like any plugin's: OpenAI-compatible Chat
Completions (OpenAI, Ollama, vLLM, llama.cpp server, LM Studio, OpenRouter) in
:mod:`~corral.plugins.model_providers.openai`, and Anthropic Messages in
:mod:`~corral.plugins.model_providers.anthropic`.

Each adapter builds on what a third-party provider would: the
:class:`~corral.models.provider.Adapter` protocol and its helpers in
:mod:`corral.models.provider`. They are imported inside the hook, so a process that
loads this plugin without asking for providers never loads them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import corral


@corral.hookimpl
def corral_register_model_providers(register: Callable[[Any], None]) -> None:
    from corral.plugins.model_providers.anthropic import AnthropicAdapter
    from corral.plugins.model_providers.openai import OpenAIAdapter

    register(OpenAIAdapter())
    register(AnthropicAdapter())
