"""Model providers: llama.cpp in-process, OpenAI-compatible HTTP, scripted (tests)."""
