"""OpenID Connect sign-in for the web view: authorization code + PKCE (S256), with Authlib.

``serve --oidc-issuer URL`` (client id and secret from ``--oidc-client-id``/``--oidc-client-secret`` or
``$SMARTOPS_OIDC_CLIENT_ID``/``$SMARTOPS_OIDC_CLIENT_SECRET``): the provider's endpoints come from its
discovery document (fetched at the first sign-in, kept; every call has a timeout). ``GET /signin``
sends the browser to the provider with a fresh ``state``, ``nonce`` and PKCE verifier kept here (bounded,
ten minutes); ``GET /signin/callback`` exchanges the code and checks the ID token's signature (the
provider's JWKS), issuer, audience, expiry and nonce, then starts a session (:mod:`.sessions`) holding
the person: ``sub`` + ``iss``, a display name, the groups of ``--oidc-groups-claim``. A provider that
cannot be reached is :class:`ProviderUnavailable` (a page says so; ``/alerts`` and ``/healthz`` need no
sign-in and keep working).
"""
from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from smartops_nb.people.identity import Identity, Unauthorized
from smartops_nb.support.reasons import one_line

TIMEOUT_S = 5.0
JWKS_TTL_S = 300.0  # the provider's signing keys are kept this long (a key it rotates in is fetched at once)
JWKS_MIN_REFETCH_S = 10.0  # ... but not more often than this, whatever ``kid`` the tokens name
PENDING_TTL_S = 600.0
MAX_PENDING = 1000
CLIENT_ID_ENV, CLIENT_SECRET_ENV = "SMARTOPS_OIDC_CLIENT_ID", "SMARTOPS_OIDC_CLIENT_SECRET"


class ProviderUnavailable(Exception):
    """The identity provider did not answer (or answered nonsense) within the timeout."""


class Provider:
    def __init__(self, issuer: str, client_id: str, client_secret: str = "", *, groups_claim: str = "groups",
                 timeout: float = TIMEOUT_S):
        self.issuer, self.client_id, self.client_secret = issuer.rstrip("/"), client_id, client_secret
        self.groups_claim, self.timeout = groups_claim, timeout
        self._meta: dict[str, Any] | None = None
        self._http = None  # one HTTP client for discovery and keys (a new one costs a TLS context)
        self._keys: tuple[float, Any] | None = None  # (fetched at, KeySet)
        self._pending: dict[str, tuple[float, str, str, str]] = {}  # state -> (until, nonce, verifier, next)
        self._lock = threading.Lock()

    def _get(self, url: str) -> dict[str, Any]:
        import httpx

        with self._lock:
            if self._http is None:
                self._http = httpx.Client(timeout=self.timeout)
        try:
            r = self._http.get(url)
            r.raise_for_status()
            return r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise ProviderUnavailable(f"the identity provider {self.issuer} is unreachable: "
                                      f"{one_line(e)}") from None

    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            meta = self._get(f"{self.issuer}/.well-known/openid-configuration")
            if not all(k in meta for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")):
                raise ProviderUnavailable(f"{self.issuer}: the discovery document lacks the endpoints")
            self._meta = meta
        return self._meta

    def _client(self, redirect_uri: str):
        from authlib.integrations.httpx_client import OAuth2Client

        return OAuth2Client(self.client_id, self.client_secret or None, scope="openid profile email",
                            redirect_uri=redirect_uri, code_challenge_method="S256", timeout=self.timeout)

    def begin(self, redirect_uri: str, next_path: str = "/incidents") -> str:
        """The provider's authorization URL for a new sign-in (its state, nonce and verifier kept here)."""
        meta = self.metadata()
        nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        with self._client(redirect_uri) as client:
            url, state = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                                         nonce=nonce)
        now = time.time()
        with self._lock:
            for old in [s for s, v in self._pending.items() if v[0] <= now]:
                del self._pending[old]
            while len(self._pending) >= MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            self._pending[state] = (now + PENDING_TTL_S, nonce, verifier, next_path)
        return url

    def finish(self, state: str, code: str, redirect_uri: str) -> tuple[Identity, str]:
        """The person the provider vouches for, and where to go next; Unauthorized for anything wrong."""
        with self._lock:
            pending = self._pending.pop(state or "", None)
        if pending is None or pending[0] <= time.time() or not code:
            raise Unauthorized("this sign-in is unknown or stale: sign in again")
        _, nonce, verifier, next_path = pending
        meta = self.metadata()
        import httpx
        from authlib.common.errors import AuthlibBaseError

        try:
            with self._client(redirect_uri) as client:
                token = client.fetch_token(meta["token_endpoint"], code=code, code_verifier=verifier)
        except httpx.HTTPError as e:
            raise ProviderUnavailable(f"the identity provider {self.issuer} is unreachable: {type(e).__name__}") from None
        except AuthlibBaseError as e:
            raise Unauthorized(f"the identity provider refused the sign-in: {e.error}") from None
        return self.identity(token.get("id_token") or "", nonce), next_path

    def _signing_keys(self, id_token: str):
        """The provider's JWKS, kept for :data:`JWKS_TTL_S`; fetched again at once for a token whose
        ``kid`` it does not hold (the provider rotated its keys), at most every :data:`JWKS_MIN_REFETCH_S`."""
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet
        from joserfc.jws import extract_compact

        try:
            kid = extract_compact(id_token.encode()).protected.get("kid")
        except (JoseError, ValueError, TypeError):
            kid = None  # not a JWS: the decode below refuses it
        kept, now = self._keys, time.monotonic()
        if kept is None or now - kept[0] > JWKS_TTL_S or (
                kid and now - kept[0] > JWKS_MIN_REFETCH_S and all(k.kid != kid for k in kept[1].keys)):
            kept = self._keys = (now, KeySet.import_key_set(self._get(self.metadata()["jwks_uri"])))
        return kept[1]

    def identity(self, id_token: str, nonce: str) -> Identity:
        """The ID token checked (signature by the provider's keys, iss, aud, exp, nonce); Unauthorized if not."""
        from joserfc import jwt
        from joserfc.errors import JoseError

        rules = jwt.JWTClaimsRegistry(leeway=30, iss={"essential": True,
                                                      "value": self.metadata().get("issuer", self.issuer)},
                                      aud={"essential": True, "value": self.client_id},
                                      nonce={"essential": True, "value": nonce}, exp={"essential": True},
                                      sub={"essential": True})
        try:
            claims = jwt.decode(id_token, self._signing_keys(id_token)).claims
            rules.validate(claims)
        except (JoseError, ValueError, TypeError) as e:
            raise Unauthorized(f"the ID token was refused: {type(e).__name__}") from None
        groups = claims.get(self.groups_claim) or []
        groups = [groups] if isinstance(groups, str) else [str(g) for g in groups if isinstance(g, (str, int))]
        name = str(claims.get("preferred_username") or claims.get("email") or claims.get("name") or claims["sub"])
        return Identity(subject=str(claims["sub"]), issuer=str(claims["iss"]), name=name[:128], how="oidc",
                        role="viewer", groups=tuple(groups[:200]))
