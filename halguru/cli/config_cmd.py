"""`halguru config`: show and change the user's settings (HALGURU_HOME/config.toml)."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Show and change your settings (config.toml in HALGURU_HOME).", no_args_is_help=True)


@app.command()
def show(json_output: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Every setting, its value and where it comes from (environment, config file or default)."""
    from halguru.config import config_items, config_path

    items = config_items()  # a misspelt key in the file is said on stderr as the settings load
    if json_output:
        typer.echo(json.dumps({k: {"value": str(v) if v is not None and not isinstance(v, bool | int | float)
                                   else v, "source": s} for k, v, s in items}, indent=2))
        return
    width = max(len(k) for k, _, _ in items)
    for key, value, source in items:
        typer.echo(f"{key:<{width}}  {'-' if value is None else value}  ({source})")
    typer.echo(f"# config file: {config_path()}")


# ignore_unknown_options: a VALUE such as -5 reaches the setting's own check instead of being taken for an option
@app.command("set", context_settings={"ignore_unknown_options": True})
def set_(
    key: str = typer.Argument(..., help="A setting from `halguru config show`."),
    value: str = typer.Argument(..., help="Its new value (a negative number too: `config set KEY -5`)."),
) -> None:
    """Write a setting to config.toml (the environment still wins over it)."""
    from halguru.config import config_path, set_config_value, shown

    if key == "default_model":  # checked as `halguru models default` checks it: the model must resolve
        from halguru.models.registry import set_default_model

        set_default_model(value)
        typer.echo(f"Set {key} = {value} in {config_path()}")
    else:
        stored = set_config_value(key, value)
        typer.echo(f"Set {key} = {shown(key, stored)} in {config_path()}")
    say_if_the_environment_wins(key)


def say_if_the_environment_wins(key: str) -> None:
    """A variable set for ``key`` keeps its value whatever config.toml says: said, or `Set KEY = V` read as
    done while the value stayed."""
    from halguru.config import config_items, setting_source
    from halguru.errors import HalguruError

    source = setting_source(key)
    if not source.startswith("HALGURU_"):
        return
    try:
        stays = f"{key} stays {next(v for k, v, _ in config_items() if k == key)}"
    except HalguruError as exc:  # the variable's own value is refused: the next command says so, as here
        stays = f"{key} stays unusable ({exc})"
    typer.echo(f"Warning: {source} is set, and the environment wins over config.toml: {stays} until you unset "
               f"{source}", err=True)


@app.command()
def unset(key: str = typer.Argument(..., help="A setting from `halguru config show`.")) -> None:
    """Remove a setting from config.toml (back to its default)."""
    from halguru.config import config_path, unset_config_value

    if unset_config_value(key):
        typer.echo(f"{key} removed from {config_path()}")
        say_if_the_environment_wins(key)
    else:
        typer.echo(f"{key} is not set in {config_path()}; nothing to remove")


@app.command()
def path() -> None:
    """Print where the config file is (it may not exist yet)."""
    from halguru.config import config_path

    typer.echo(str(config_path()))
