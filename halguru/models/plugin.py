"""Built-in model providers, registered through the same hook as third-party plugins.

The provider modules are light: llama_cpp and httpx are imported only when a
model is created or called.
"""

from __future__ import annotations

from typing import Any

from halguru.plugins.hookspecs import hookimpl


@hookimpl
def register_models(register: Any) -> None:
    from halguru.models.llama_cpp import LlamaCppProvider
    from halguru.models.openai_compat import OpenAIProvider
    from halguru.models.scripted import ScriptedProvider

    register(LlamaCppProvider)
    register(OpenAIProvider)
    register(ScriptedProvider)
