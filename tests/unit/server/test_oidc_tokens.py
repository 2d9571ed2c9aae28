"""Which ID tokens the web view's sign-in accepts (``server/oidc.Provider.identity``).

The issuer here is a loopback HTTP server serving a discovery document and a JWKS, as OpenID Connect
Discovery 1.0 describes them, with a key this test holds: so it can sign the tokens a provider would
never issue to us (expired, for another client, for another sign-in). The sign-in against a real
provider, in Chromium, is ``tests/scenarios/test_oidc_signin.py``.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from smartops_nb.people.identity import Unauthorized
from smartops_nb.server import oidc
from smartops_nb.server.oidc import Provider, ProviderUnavailable

CLIENT = "smartops"
NONCE = "nonce-1"
DOCUMENTS: dict[str, dict] = {}  # what the loopback issuer serves, by path


@pytest.fixture(scope="module")
def key():
    return RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})


@pytest.fixture(scope="module")
def issuer(key):
    documents = DOCUMENTS

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = documents.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body or {}).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_port}"
    documents["/.well-known/openid-configuration"] = {
        "issuer": url, "authorization_endpoint": f"{url}/authorize", "token_endpoint": f"{url}/token",
        "jwks_uri": f"{url}/jwks", "id_token_signing_alg_values_supported": ["RS256"]}
    documents["/jwks"] = KeySet([key]).as_dict(private=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def provider(issuer):
    return Provider(issuer, CLIENT)  # one, as serve keeps one: the discovery document is fetched once


def _token(issuer: str, key, **changes) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": CLIENT, "sub": "alice", "nonce": NONCE, "iat": now, "exp": now + 300,
              "preferred_username": "alice", "groups": ["sre"], **changes}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


def test_a_token_the_provider_signed_for_this_sign_in_names_the_person(provider, issuer, key):
    who = provider.identity(_token(issuer, key), NONCE)
    assert (who.subject, who.issuer, who.name, who.how, who.groups) == ("alice", issuer, "alice", "oidc", ("sre",))
    assert who.role == "viewer"  # roles come from the policy, never from the token


@pytest.mark.parametrize("why, changes", [
    ("expired two minutes ago (past the 30 s leeway)", {"exp": int(time.time()) - 120, "iat": int(time.time()) - 420}),
    ("issued for another client", {"aud": "another-app"}),
    ("issued by another issuer", {"iss": "http://127.0.0.1:1"}),
    ("from another sign-in (its nonce)", {"nonce": "nonce-of-another-sign-in"}),
    ("without a nonce", {"nonce": None}),
    ("without an expiry", {"exp": None}),
    ("without a subject", {"sub": None}),
])
def test_a_token_that_is_not_for_this_sign_in_is_refused(provider, issuer, key, why, changes):
    with pytest.raises(Unauthorized, match="the ID token was refused"):
        provider.identity(_token(issuer, key, **changes), NONCE)


def test_a_token_signed_by_another_key_is_refused(provider, issuer):
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with pytest.raises(Unauthorized, match="the ID token was refused"):
        provider.identity(_token(issuer, other), NONCE)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."])
def test_garbage_and_unsigned_tokens_are_refused(provider, token):
    with pytest.raises(Unauthorized):
        provider.identity(token, NONCE)


def test_a_provider_that_does_not_answer_is_unavailable_not_a_crash():
    with pytest.raises(ProviderUnavailable, match="unreachable"):
        Provider("http://127.0.0.1:1", CLIENT, timeout=1.0).identity("x.y.z", NONCE)


def test_a_key_the_provider_rotated_in_is_fetched_and_the_old_one_dropped(issuer, key, monkeypatch):
    provider = Provider(issuer, CLIENT)
    provider.identity(_token(issuer, key), NONCE)  # the keys are kept from here on
    new = RSAKey.generate_key(2048, parameters={"kid": "k2", "use": "sig", "alg": "RS256"})
    monkeypatch.setitem(DOCUMENTS, "/jwks", KeySet([new]).as_dict(private=False))
    monkeypatch.setattr(oidc, "JWKS_MIN_REFETCH_S", 0.0)
    now = int(time.time())
    rotated = jwt.encode({"alg": "RS256", "kid": "k2"}, {"iss": issuer, "aud": CLIENT, "sub": "alice", "nonce": NONCE,
                                                         "iat": now, "exp": now + 300}, new)
    assert provider.identity(rotated, NONCE).subject == "alice"
    with pytest.raises(Unauthorized):
        provider.identity(_token(issuer, key), NONCE)  # k1 is no longer the provider's
