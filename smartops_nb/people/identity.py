"""An authenticated person (or service) and what each role may do.

Roles form a ladder: ``viewer`` (pages) < ``responder`` (deny, comment, re-run an investigation)
< ``approver`` (approve) < ``admin`` (tokens, policy). ``alertmanager`` is apart: it may post alerts
and nothing else (it is never a step of the ladder).
"""
from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field
from typing import Any

ROLES = ("viewer", "responder", "approver", "admin")
ALERTMANAGER = "alertmanager"
#: The least role each permission needs.
PERMISSIONS = {"view": "viewer", "deny": "responder", "comment": "responder", "investigate": "responder",
               "approve": "approver", "tokens": "admin", "policy": "admin"}
HOWS = ("oidc", "token", "proxy", "local")


class Unauthorized(Exception):
    """No valid credential (unknown, expired or revoked token; no sign-in): HTTP 401."""


class Forbidden(Exception):
    """A valid identity whose role may not do this; the message names the missing permission: HTTP 403."""


def rank(role: str) -> int:
    """A role's place on the ladder (``alertmanager`` and unknown roles: below viewer)."""
    return ROLES.index(role) if role in ROLES else -1


@dataclass(frozen=True)
class Identity:
    subject: str
    issuer: str
    name: str
    how: str                       # oidc | token | proxy | local
    role: str = "viewer"           # as proven by the credential (a token's role) or given by the policy
    groups: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        """How a decision names this identity to a reader: ``alice (oidc https://idp/)``."""
        where = f" {self.issuer}" if self.how in ("oidc", "proxy") and self.issuer else ""
        return f"{self.name} ({self.how}{where})"

    @property
    def decider(self) -> str:
        """The name a record's ``operator`` carries: the typed name for a local person, else who and
        by which issuer (``alice (subject 5f2…, issuer https://idp/, via oidc)``)."""
        return describe(self.to_dict())

    @property
    def key(self) -> tuple[str, str]:
        """What makes two approvals "two different people": subject and issuer."""
        return (self.issuer, self.subject)

    def to_dict(self) -> dict[str, Any]:
        """What records and plans keep (no credential, no group list)."""
        return {"subject": self.subject, "issuer": self.issuer, "name": self.name, "how": self.how}

    def may(self, permission: str) -> bool:
        return rank(self.role) >= rank(PERMISSIONS[permission])

    def require(self, permission: str) -> None:
        """Raise :class:`Forbidden` naming the permission when this identity's role lacks it."""
        if not self.may(permission):
            raise Forbidden(f"{self.name} ({self.role}) lacks the permission {permission!r} "
                            f"(needs role {PERMISSIONS[permission]} or above)")


def describe(who: dict[str, Any]) -> str:
    """One decider as text, from :meth:`Identity.to_dict` (as plans keep it)."""
    if who.get("how") == "local":
        return str(who["name"])
    # not "token: …": the records' secret masker would take the subject for a token's value
    return f"{who['name']} (subject {who['subject']}, issuer {who['issuer']}, via {who['how']})"


def local(name: str | None = None, role: str = "admin") -> Identity:
    """The person at this machine (a local folder archive, no policy): the OS user, or a typed name."""
    user = getpass.getuser() if not name else name
    return Identity(subject=user, issuer=f"local:{socket.gethostname()}", name=user, how="local", role=role)


def alertmanager() -> Identity:
    return Identity(subject=ALERTMANAGER, issuer="serve-token", name=ALERTMANAGER, how="token", role=ALERTMANAGER)


def of(operator: "str | Identity") -> Identity:
    """An identity for a caller: one already proven, or (no authentication on this path) a typed name."""
    if isinstance(operator, Identity):
        return operator
    return local(operator or os.environ.get("USER") or None)
