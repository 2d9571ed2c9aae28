"""Personal tokens for the CLI and automation, kept in the archive's index (SQLite beside a folder
archive, else the shared PostgreSQL index: every machine of the team checks the same ones).

A token is ``smo_`` + 32 random bytes (URL-safe); it is printed once by ``smartops token create``
and only its SHA-256 hash is stored (a high-entropy secret needs no slow hash). A token names a
user and a role and may expire; a revoked or expired one is :class:`~.identity.Unauthorized`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import TYPE_CHECKING, Any

from smartops_nb.contract import ParameterError
from smartops_nb.params import iso, parse_time, utcnow

from .identity import ROLES, Identity, Unauthorized

if TYPE_CHECKING:
    from smartops_nb.records.archive import Archive

PREFIX = "smo_"
ISSUER = "smartops-token"
_DURATION = re.compile(r"^(\d{1,5})([mhdw])$")
_UNIT = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def expires_in(text: str | None) -> dt.timedelta | None:
    """``90d``, ``12h``, ``30m``, ``2w``; ``never`` or None: no expiry. ParameterError otherwise."""
    if text is None or text == "never":
        return None
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ParameterError(f"--expires: {text!r} is not a duration like 90d, 12h, 30m, 2w or 'never'")
    return dt.timedelta(**{_UNIT[m.group(2)]: int(m.group(1))})


class Tokens:
    """The token table of one archive's index."""

    def __init__(self, archive: "Archive"):
        self._archive = archive
        self.where = str(archive)

    def _db(self, write: bool = False):
        return self._archive.tables("people", write=write)

    def _sql(self, sql: str) -> str:
        return self._archive.sql(sql)

    def create(self, user: str, role: str, expires: str | None = "90d", *, by: str = "") -> tuple[str, dict[str, Any]]:
        """A new token for ``user`` with ``role``: (the token, shown once; its row without the hash)."""
        if not _NAME.match(user or ""):
            raise ParameterError(f"--user: {user!r} is not a user name (letters, digits, . _ @ + -; at most 128)")
        if role not in ROLES:
            raise ParameterError(f"--role: {role!r} is not a role ({', '.join(ROLES)})")
        ttl = expires_in(expires)
        token = PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        row = {"id": "tk-" + secrets.token_hex(4), "user_name": user, "role": role, "created_at": iso(now),
               "created_by": by, "expires_at": iso(now + ttl) if ttl else None, "revoked_at": None}
        with self._db(write=True) as con:
            con.execute(self._sql("INSERT INTO tokens (id, hash, user_name, role, created_at, created_by, expires_at) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?)"),
                        (row["id"], digest(token), user, role, row["created_at"], by, row["expires_at"]))
        return token, row

    def list(self) -> list[dict[str, Any]]:
        """Every token (never its hash), newest first, with its state: active, expired or revoked."""
        with self._db() as con:
            if con is None:
                return []
            rows = [dict(r) for r in con.execute(
                "SELECT id, user_name, role, created_at, created_by, expires_at, revoked_at FROM tokens "
                "ORDER BY created_at DESC, id").fetchall()]
        return [{**r, "state": _state(r)} for r in rows]

    def revoke(self, token_id: str) -> dict[str, Any]:
        with self._db(write=True) as con:
            n = con.execute(self._sql("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"),
                            (iso(utcnow()), token_id)).rowcount
        row = next((r for r in self.list() if r["id"] == token_id), None)
        if row is None:
            raise ParameterError(f"no token {token_id!r} in {self.where}")
        if n == 0:
            raise ParameterError(f"token {token_id} was already revoked at {row['revoked_at']}")
        return row

    def identity(self, token: str | None) -> Identity:
        """Who a token names; :class:`Unauthorized` (one line, no token in it) if unknown, expired or revoked."""
        if not token or not token.startswith(PREFIX) or len(token) > 200:
            raise Unauthorized("missing or unknown token")
        with self._db() as con:
            row = None if con is None else con.execute(
                self._sql("SELECT id, user_name, role, expires_at, revoked_at FROM tokens WHERE hash = ?"),
                (digest(token),)).fetchone()
        if row is None:
            raise Unauthorized("missing or unknown token")
        row = dict(row)
        state = _state(row)
        if state != "active":
            raise Unauthorized(f"token {row['id']} is {state}")
        return Identity(subject=row["user_name"], issuer=ISSUER, name=row["user_name"], how="token", role=row["role"])


def _state(row: dict[str, Any]) -> str:
    if row.get("revoked_at"):
        return "revoked"
    if row.get("expires_at") and parse_time(row["expires_at"]) <= utcnow():
        return "expired"
    return "active"
