"""Plugin system: pluggy, project name ``halguru``, entry-point group ``halguru``."""

from halguru.plugins.hookspecs import hookimpl

__all__ = ["hookimpl"]
