"""`halguru models`: list, add, remove, default, set-key."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="List and register models.", no_args_is_help=True)


@app.command("list")
def list_(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show every model you can name in agent.yaml or --model, and where it comes from."""
    from halguru.models.registry import default_model, list_models, providers

    entries, default = list_models(), default_model()
    if json_output:
        typer.echo(json.dumps([{**e.model_dump(), "default": e.name == default} for e in entries], indent=2))
        return
    from halguru.cli.table import print_table

    rows = [(e.name + (" (default)" if e.name == default else ""), e.provider, e.source) for e in entries]
    print_table(["name", "provider", "source"], rows, ("source",))
    names = ", ".join(f"{name}:ARG" for name in sorted(providers()))
    typer.echo(f"Also accepted: a path to a .gguf file, {names}, or `default` ({default}).")


@app.command()
def add(
    name: str = typer.Argument(..., help="The name to use in agent.yaml and --model."),
    gguf: Path | None = typer.Option(None, "--gguf", help="A local GGUF file (llama.cpp provider)."),
    openai_base_url: str | None = typer.Option(None, "--openai-base-url", help="An OpenAI-compatible API base URL."),
    model_id: str | None = typer.Option(None, "--model-id", help="The model id the endpoint expects (default NAME)."),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="Environment variable holding the API key."),
    keyring: bool = typer.Option(False, "--keyring", help="Read the API key from the system keyring (set-key)."),
    n_ctx: int | None = typer.Option(None, "--n-ctx", min=256,  # as llama_n_ctx
                                     help="Context size for a GGUF model, in tokens."),
    force: bool = typer.Option(False, "--force", help="Replace a registered model or shadow a built-in one."),
) -> None:
    """Register a model: a GGUF file, or an OpenAI-compatible endpoint."""
    from halguru.errors import HalguruError
    from halguru.models.registry import add_model

    if (gguf is None) == (openai_base_url is None):
        raise HalguruError("give exactly one of --gguf PATH or --openai-base-url URL")
    if gguf is not None:
        path = gguf.expanduser().resolve()
        if not path.is_file():
            raise HalguruError(f"GGUF file not found: {path}")
        from halguru.models.llama_cpp import check_gguf

        check_gguf(path)  # the header and tensor table: a truncated download is refused here, not at the first run
        options: dict = {"path": str(path)}
        if n_ctx:
            options["n_ctx"] = n_ctx
        entry = add_model(name, "llama-cpp", options, source=str(path), force=force)
    else:
        assert openai_base_url is not None
        if not openai_base_url.startswith(("http://", "https://")):
            raise HalguruError(f"--openai-base-url must start with http:// or https://, got {openai_base_url!r}")
        options = {"base_url": openai_base_url, "model_id": model_id or name}
        if api_key_env:
            options["api_key_env"] = api_key_env
        if keyring:
            options["keyring"] = True
        entry = add_model(name, "openai", options, source=openai_base_url, force=force)
    typer.echo(f"Added model {entry.name} ({entry.provider}, {entry.source}).")


@app.command()
def remove(name: str = typer.Argument(..., help="A model added with `halguru models add`.")) -> None:
    """Forget a registered model (built-in models cannot be removed); if it was the default model, the
    default_model setting is reset too."""
    from halguru.models.registry import default_model, remove_model

    removed = remove_model(name)
    shadowed = removed.shadowed
    typer.echo(f"Removed model {name}." + (f" The built-in {name} ({shadowed.provider}) is used again."
                                             if shadowed is not None else "")
               + (f" It was the default model: the default is now {default_model()}."
                  if removed.default_reset else ""))


@app.command()
def default(name: str | None = typer.Argument(None, help="A model name or reference; omit it to show the default.")
            ) -> None:
    """Show or set the default model: what `model: default` in agent.yaml and `--model default` use."""
    from halguru.models.registry import default_model, set_default_model

    if name is None:
        typer.echo(default_model())
        return
    from halguru.cli.config_cmd import say_if_the_environment_wins

    entry = set_default_model(name)
    typer.echo(f"Default model is now {name} ({entry.provider}, {entry.source}).")
    say_if_the_environment_wins("default_model")  # HALGURU_DEFAULT_MODEL keeps the old one


@app.command("set-key")
def set_key(name: str = typer.Argument(..., help="A model added with --openai-base-url.")) -> None:
    """Store a model's API key in the system keyring (never in a file); piped, it reads one line."""
    import sys

    from halguru.errors import HalguruError
    from halguru.models.registry import require_user_model, set_model_option
    from halguru.models.secrets import require_keyring, store_api_key

    # Check everything before asking for the secret: nothing typed for nothing, nothing stored under a bad name.
    require_user_model(name)
    require_keyring(name)
    if sys.stdin.isatty():
        key = typer.prompt(f"API key for {name}", hide_input=True)
    else:  # piped (`pass show x | halguru models set-key NAME`): one line, no GetPassWarning
        key = sys.stdin.readline().strip()
        if not key:
            raise HalguruError(f"no API key on standard input for {name}: pipe it in (one line), or run "
                               "this on a terminal")
    store_api_key(name, key)
    set_model_option(name, "keyring", True)
    typer.echo(f"Stored the API key for {name} in the keyring.")
