"""The ``halguru`` command line: thin typer commands over library functions."""
