"""OIDC providers in the serve settings: the presets' issuers, and what is refused before anything listens."""

from __future__ import annotations

from pathlib import Path

import pytest
from halguru_server.identity import oidc
from halguru_server.identity.settings import AuthSettings, OidcProvider
from pydantic import ValidationError


def test_presets_know_their_issuers() -> None:
    assert oidc.issuer_url(OidcProvider(name="google", client_id="x")) == "https://accounts.google.com"
    assert oidc.issuer_url(OidcProvider(name="entra", client_id="x", tenant="contoso-id")) == \
        "https://login.microsoftonline.com/contoso-id/v2.0"
    assert oidc.issuer_url(OidcProvider(name="work", client_id="x", tenant="common")) == \
        "https://login.microsoftonline.com/common/v2.0"
    assert oidc.issuer_url(OidcProvider(name="entra", client_id="x")).endswith("/organizations/v2.0")
    corp = OidcProvider(name="corp", client_id="x", issuer="https://id.example.com/realms/main")
    assert oidc.issuer_url(corp) == "https://id.example.com/realms/main"


@pytest.mark.parametrize(("provider", "message"), [
    ({"name": "corp", "client_id": "x"}, "corp has no issuer"),
    ({"name": "entra", "client_id": "x", "tenant": "a/../b"}, "tenant must be a directory id"),
    ({"name": "corp", "client_id": "x", "issuer": "http://id.example.com"}, "must be an https URL"),
    ({"name": "corp", "client_id": "x", "issuer": "id.example.com"}, "must be an https URL"),
    ({"name": "corp", "client_id": "x", "issuer": "https://id.example.com", "default_role": "root"},
     "unknown role 'root'"),
    ({"name": "Corp!", "client_id": "x", "issuer": "https://id.example.com"}, "should match pattern"),
])
def test_a_provider_that_cannot_work_is_refused_at_start(provider: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AuthSettings.model_validate({"oidc": [provider]})


def test_loopback_issuers_may_be_plain_http() -> None:
    for issuer in ("http://127.0.0.1:9400", "http://localhost:9400", "http://[::1]:9400/realm"):
        AuthSettings.model_validate({"oidc": [{"name": "dev", "client_id": "x", "issuer": issuer}]})


def test_two_providers_with_one_name_are_refused() -> None:
    google = {"name": "google", "client_id": "x"}
    with pytest.raises(ValidationError, match="two OIDC providers are named google"):
        AuthSettings.model_validate({"oidc": [google, google]})


def test_the_serve_config_says_which_setting(tmp_path: Path) -> None:
    from halguru_server.settings import load_settings

    from halguru.errors import HalguruError

    config = tmp_path / "serve.yaml"
    config.write_text("auth:\n  oidc:\n    - {name: corp, client_id: x}\n")
    with pytest.raises(HalguruError, match=r"invalid serve setting auth\.oidc\.0: .*corp has no issuer"):
        load_settings(config)


@pytest.mark.parametrize(("said", "configured", "same"), [
    ("https://id.example.com", "https://id.example.com", True),
    ("https://id.example.com/", "https://id.example.com", True),
    ("https://evil.example", "https://id.example.com", False),  # a mix-up: another issuer's document
    ("https://id.example.com/realms/other", "https://id.example.com/realms/main", False),
    # Entra names its tenant by id whatever alias was asked, and a template on its multi-tenant endpoints
    ("https://login.microsoftonline.com/{tenantid}/v2.0", "https://login.microsoftonline.com/common/v2.0", True),
    ("https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
     "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0", True),
    ("https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
     "https://login.microsoftonline.com/consumers/v2.0", True),
    ("https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/", "https://login.microsoftonline.com/common/v2.0",
     False),  # the v1 issuer: not what a v2.0 token carries
    ("https://evil.example/{tenantid}/v2.0", "https://login.microsoftonline.com/common/v2.0", False),
    ("https://login.microsoftonline.com/{tenantid}/v2.0", "https://id.example.com", False),
])
def test_discovery_must_name_the_issuer_it_was_fetched_for(said: str, configured: str, same: bool) -> None:
    assert oidc._same_issuer(said, configured) is same
