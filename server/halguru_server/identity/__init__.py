"""Identity and access in serve mode: users, roles, sessions, sign-in (docs/identity.md is the contract).

``roles`` (permissions per role), ``accounts`` (users, passwords, TOTP, recovery codes, lockout, tokens),
``websessions`` (cookie sessions and CSRF), ``guards`` (the FastAPI dependency every route declares),
``session_routes`` (/auth/me, sign-out, the session list), ``settings`` (``ServerSettings.auth``).
"""
