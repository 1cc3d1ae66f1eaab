"""``python -m halguru`` runs the CLI."""

from halguru.cli.app import main

main()
