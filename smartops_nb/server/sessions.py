"""The install's secret and the web pages' sign-in sessions.

- **The secret**: 32 random bytes in the state folder (``$SMARTOPS_STATE_DIR/serve.secret``, mode 0600),
  made on the first start (written to a private temporary file, then linked into place: two processes
  starting at once end up with the same one). It keys the CSRF tokens of the pages' forms (in loopback
  mode too: an attacker cannot compute them) and signs session ids.
- **Sessions**: signing in (the serve token, a personal token) starts one, holding who signed in; the cookie holds its id and a signature,
  never the token. Sessions live in this process (a restart signs everyone out), end after
  :data:`SESSION_TTL` or on sign-out, and are bounded in number (the oldest give way).
- **The cookie's name** carries the port and an id of the install: cookies are not port-scoped, so two
  servers on one host (or another local service) never overwrite or receive each other's.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable

from smartops_nb.contract import ParameterError
from smartops_nb.support.files import write_synced

SECRET_FILE = "serve.secret"
SECRET_BYTES = 32
SESSION_TTL = 12 * 3600.0     # seconds a sign-in lasts
MAX_SESSIONS = 10_000         # at most this many at once: the oldest give way


def install_secret(folder: str | os.PathLike | None = None) -> bytes:
    """This install's secret: read from ``folder/serve.secret``, made there (0600) on first use."""
    if folder is None:
        from smartops_nb.records.archive import state_dir

        folder = state_dir()
    folder = Path(folder)
    path = folder / SECRET_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = folder / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                write_synced(f, secrets.token_hex(SECRET_BYTES) + "\n")
            try:
                os.link(tmp, path)  # atomic, and never replaces one another process made meanwhile
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except ValueError:
        secret = b""
    if len(secret) < SECRET_BYTES:
        raise ParameterError(f"{path} is not a SmartOps secret ({SECRET_BYTES} random bytes as hex): "
                             "delete it and a new one is made at the next start")
    return secret


class Sessions:
    """Sign-in sessions, the cookie that names one, and the install's MACs (CSRF tokens)."""

    def __init__(self, secret: bytes, *, port: int | None = None, ttl: float = SESSION_TTL,
                 limit: int = MAX_SESSIONS, clock: Callable[[], float] = time.time):
        self._secret, self.ttl, self.limit, self._clock = secret, ttl, limit, clock
        self._expiry: dict[str, float] = {}   # session id -> when it ends (insertion order = age)
        self._who: dict[str, Any] = {}        # session id -> who signed in (None: the shared serve token)
        self._lock = threading.Lock()
        install = self.mac("install-id", "")[:8]
        self.cookie = f"smartops_session_{port}_{install}" if port else f"smartops_session_{install}"

    @classmethod
    def for_install(cls, port: int | None = None, folder: str | os.PathLike | None = None, **kw) -> "Sessions":
        return cls(install_secret(folder), port=port, **kw)

    def mac(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 of ``value`` for ``purpose`` under the install's secret (hex)."""
        return hmac.new(self._secret, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()

    def start(self, who: Any = None) -> str:
        """A new session for ``who``; the cookie value that names it (``id.signature``)."""
        sid = secrets.token_urlsafe(24)
        now = self._clock()
        with self._lock:
            for old in [s for s, end in self._expiry.items() if end <= now]:
                self._drop(old)
            while len(self._expiry) >= self.limit:
                self._drop(next(iter(self._expiry)))
            self._expiry[sid] = now + self.ttl
            self._who[sid] = who
        return f"{sid}.{self.mac('session', sid)}"

    def check(self, value: str | None) -> str | None:
        """The session id a cookie value names, if its signature holds and the session is live."""
        sid, _, sig = (value or "").partition(".")
        if not sid or not hmac.compare_digest(sig.encode(), self.mac("session", sid).encode()):
            return None
        with self._lock:
            end = self._expiry.get(sid)
            if end is None or end <= self._clock():
                self._drop(sid)
                return None
        return sid

    def who(self, value: str | None) -> Any:
        """Who signed in to the live session a cookie value names (None: none, or the shared token)."""
        sid = self.check(value)
        return self._who.get(sid) if sid else None

    def _drop(self, sid: str) -> None:
        self._expiry.pop(sid, None)
        self._who.pop(sid, None)

    def end(self, value: str | None) -> None:
        """Sign out: the session a cookie value names ends now."""
        sid = self.check(value)
        if sid:
            with self._lock:
                self._drop(sid)

    def __len__(self) -> int:
        return len(self._expiry)
