"""`halguru build` and `halguru push`: container images of served agents (halguru.deploy)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command(name="build")(build)
    app.command(name="push", short_help="Push an image to its registry (credentials from the keyring or "
                "`docker login`).")(push)


def _show(line: str) -> None:
    typer.echo(line, err=True)


def build(
    paths: list[Path] = typer.Argument(..., help="Agent projects, or folders holding them.", show_default=False),
    tag: str = typer.Option(..., "--tag", "-t", help="The image to make, e.g. registry.example.com/team/agents:1."),
    base: str = typer.Option(None, help="halguru's image to build on [default: localhost/halguru:latest, or "
                             "HALGURU_BASE_IMAGE]."),
    no_check: bool = typer.Option(False, "--no-check", help="Skip loading the agents here first."),
) -> None:
    """Build an image that serves these agents: halguru's image with them baked in at /agents. Talks to
    Docker, or to Podman's Docker-compatible socket (DOCKER_HOST)."""
    import os

    from halguru.deploy.image import DEFAULT_BASE, build_image

    image_id = build_image(paths, tag, base=base or os.environ.get("HALGURU_BASE_IMAGE") or DEFAULT_BASE,
                           show=_show, check=not no_check)
    typer.echo(f"built {tag} ({image_id})")


def push(ref: str = typer.Argument(..., help="The image to push, e.g. registry.example.com/team/agents:1.")) -> None:
    """Push an image to its registry; credentials from the keyring (`keyring set halguru registry:HOST`, as
    USER:PASSWORD) or the Docker config (`docker login`)."""
    from halguru.deploy.image import push_image

    digest = push_image(ref, show=_show)
    typer.echo(f"pushed {ref}@{digest}" if "@" not in ref else f"pushed {ref}")
