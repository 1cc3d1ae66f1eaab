"""Commands a user reaches for by another name: `halguru kb delete` is `kb drop`, `keys delete` is `keys revoke`.

Click's own "Did you mean" finds typos (`dorp` → `drop`) but not synonyms, so `kb delete` only said "No such command
'delete'". Every command group of the CLI (plugins' too) gets ``SuggestingGroup``, which adds the group's command
that does what the word asked for to the same one line.
"""

from __future__ import annotations

from difflib import get_close_matches
from typing import Any

import typer
import typer.core

SYNONYMS: dict[str, tuple[str, ...]] = {
    "delete": ("drop", "revoke", "disable", "remove", "rm", "cancel"),
    "remove": ("drop", "delete", "revoke", "disable", "rm"),
    "rm": ("drop", "delete", "revoke", "remove"),
    "del": ("drop", "delete", "revoke", "remove"),
    "destroy": ("drop", "delete"),
    "ls": ("list",),
    "add": ("create", "new", "register"),
    "create": ("new", "add", "register"),
    "new": ("create", "add"),
    "make": ("create", "new"),
    "get": ("show",),
    "info": ("show",),
    "describe": ("show",),
    "inspect": ("show",),
    "view": ("show",),
    "find": ("search",),
    "query": ("search",),
    "stop": ("cancel",),
    "kill": ("cancel",),
    "undo": ("rollback",),
    "revert": ("rollback",),
    "import": ("ingest",),
    "index": ("ingest",),
    "load": ("ingest",),
    "upload": ("ingest", "publish"),
    "deploy": ("publish",),
    "start": ("serve", "run", "chat"),
}


class SuggestingGroup(typer.core.TyperGroup):
    """A command group whose "No such command" names the command that does what the word asked for."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            found = [other for other in SYNONYMS.get(name.lower(), ()) if other in self.commands]
            if found:  # and what click would have suggested for a typo ('deploy': 'publish' or 'deployments')
                found += [c for c in get_close_matches(name, list(self.commands)) if c not in found]
                ctx.fail(f"No such command {name!r}. Did you mean {' or '.join(repr(f) for f in found)}?")
        return super().resolve_command(ctx, args)


def suggest_synonyms(app: Any) -> None:
    """Make every command group under the typer ``app`` a ``SuggestingGroup`` (those with a class of their own
    keep it)."""
    for group in app.registered_groups:
        sub = group.typer_instance
        if getattr(sub.info.cls, "value", sub.info.cls) in (None, typer.core.TyperGroup):
            sub.info.cls = SuggestingGroup
        suggest_synonyms(sub)
