"""`halguru dev`: the Textual debugger. Import only from inside the `dev` command (textual is heavy)."""
