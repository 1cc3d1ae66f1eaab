"""A real OpenID provider on loopback whose ID tokens each test writes itself (the token-level negatives of the
OIDC tests): discovery, a JWKS it can rotate, and a token endpoint that answers with ``id_token``.

It is a real HTTP peer (``http.server`` in a thread), so halguru's discovery, key fetching and code exchange run
exactly as against a provider; only the tokens are forged, which is the point.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

CLIENT_ID = "halguru-test"
CLIENT_SECRET = "test-secret"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeProvider:
    """Serves ``/.well-known/openid-configuration``, ``/jwks`` (``published``) and ``/token`` (``id_token``)."""

    def __init__(self, algorithms: tuple[str, ...] = ("RS256", "ES256")) -> None:
        self.key = RSAKey.generate_key(2048, {"kid": "k1", "use": "sig"}, private=True)
        self.ec_key = ECKey.generate_key("P-256", {"kid": "e1"}, private=True)
        self.published: list[Key] = [self.key, self.ec_key]
        self.algorithms = algorithms
        self.id_token: str | None = None
        self.discovery_issuer: str | None = None  # None: its own address
        self.jwks_fetches = 0
        self.token_requests: list[dict[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.discovery_issuer or self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": list(self.algorithms)}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, body: Any, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.endswith("/.well-known/openid-configuration"):
                    self._json(provider.discovery())
                elif self.path == "/jwks":
                    provider.jwks_fetches += 1
                    self._json({"keys": [k.as_dict(private=False) for k in provider.published]})
                else:
                    self._json({"error": "not_found"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                form["authorization"] = self.headers.get("Authorization", "")
                provider.token_requests.append(form)
                if self.path != "/token" or provider.id_token is None:
                    self._json({"error": "invalid_grant"}, 400)
                    return
                self._json({"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                            "id_token": provider.id_token})

        return Handler

    # -- tokens -----------------------------------------------------------------------------------------------
    def claims(self, nonce: str | None, **overrides: Any) -> dict[str, Any]:
        """Claims that pass every check (with this nonce), changed by ``overrides`` (None removes one)."""
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": CLIENT_ID, "sub": "user-1", "iat": now,
                                  "exp": now + 300, "nonce": nonce, "email": "ann@example.com",
                                  "email_verified": True, "name": "Ann"}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], key: Key | None = None, alg: str = "RS256",
             kid: str | None = "k1", **extra: Any) -> str:
        header: dict[str, Any] = {"alg": alg, **extra}
        if kid is not None:
            header["kid"] = kid
        return jwt.encode(header, claims, key or self.key, algorithms=[alg])


def unsigned(claims: dict[str, Any]) -> str:
    """``alg: none``: no signature at all."""
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}."


def hmac_with_public_key(claims: dict[str, Any], public_pem: bytes, kid: str = "k1") -> str:
    """HS256 "signed" with the provider's public key as the secret: the classic key-confusion forgery."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def s256(verifier: str) -> str:
    return b64(hashlib.sha256(verifier.encode()).digest())
