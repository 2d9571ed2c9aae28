"""Read PostgreSQL: log in safely, and query pg_stat_activity and settings.

The investigation connection is read-only (``default_transaction_read_only``), has a short
``statement_timeout`` and an ``application_name`` that marks it as the runbook's own, so that
it can be told apart from (and never counted as, or terminated as) an application connection.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .. import redact

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 5000

# Refusals that mean "every slot is taken": they are evidence, not just an error.
SLOT_REFUSALS = (
    "too many clients already",
    "remaining connection slots are reserved",
    "sorry, too many clients",
)


class Unreachable(RuntimeError):
    """The database could not be reached or refused the login; the message says why."""


@dataclass
class LoginAttempt:
    dsn: str                       # masked
    ok: bool
    via: str = "postgres_dsn"      # or postgres_admin_dsn
    error: str = ""
    slots_exhausted: bool = False  # refused because no connection slot was free
    attempts: list[dict[str, Any]] = field(default_factory=list)


def classify_error(message: str) -> bool:
    """True when a login error says the server has no free connection slot."""
    low = message.lower()
    return any(s in low for s in SLOT_REFUSALS)


def connect(dsn: str, application_name: str, *, read_only: bool = True, timeout: int = CONNECT_TIMEOUT_S):
    import psycopg

    options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout=2000"
    if read_only:
        options += " -c default_transaction_read_only=on"
    return psycopg.connect(dsn, connect_timeout=timeout, application_name=application_name,
                           options=options, autocommit=True)


class Session:
    """A lazily opened, read-only investigation session (the one connection a runbook holds).

    :meth:`login` tries ``dsn`` and, when that is refused for lack of slots, ``admin_dsn`` (a role
    allowed to use the reserved slots). Probes call :attr:`conn`, which raises :class:`Unreachable`
    with the recorded reason when no login succeeded.
    """

    def __init__(self, dsn: str, application_name: str, admin_dsn: str = ""):
        self.dsn, self.admin_dsn, self.application_name = dsn, admin_dsn, application_name
        self._conn = None
        self._attempt: LoginAttempt | None = None

    def login(self) -> LoginAttempt:
        if self._attempt is not None:
            return self._attempt
        attempts = []
        for via, dsn in (("postgres_dsn", self.dsn), ("postgres_admin_dsn", self.admin_dsn)):
            if not dsn:
                continue
            try:
                self._conn = connect(dsn, self.application_name)
                attempts.append({"via": via, "ok": True})
                self._attempt = LoginAttempt(redact.safe_dsn(dsn), True, via=via, attempts=attempts,
                                             slots_exhausted=any(a.get("slots_exhausted") for a in attempts))
                return self._attempt
            except Exception as e:
                msg = redact.scrub(" ".join(str(e).split()))
                attempts.append({"via": via, "ok": False, "error": msg, "slots_exhausted": classify_error(msg)})
        first = attempts[0] if attempts else {"error": "no postgres_dsn given", "slots_exhausted": False}
        self._attempt = LoginAttempt(redact.safe_dsn(self.dsn), False, error=first["error"],
                                     slots_exhausted=any(a.get("slots_exhausted") for a in attempts),
                                     attempts=attempts)
        return self._attempt

    @property
    def conn(self):
        attempt = self.login()
        if not attempt.ok or self._conn is None:
            raise Unreachable(f"no database session: {attempt.error}")
        return self._conn

    def query(self, sql: str, params: tuple | dict | None = None) -> pd.DataFrame:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            cols = [c.name for c in cur.description] if cur.description else []
            return pd.DataFrame(cur.fetchall(), columns=cols)

    def scalar(self, sql: str, params: tuple | dict | None = None) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return row[0] if row else None

    def writable(self):
        """A separate read-write connection for an approved mitigation (admin role preferred)."""
        last: Exception | None = None
        for dsn in (self.admin_dsn, self.dsn):
            if dsn:
                try:
                    return connect(dsn, self.application_name + ":mitigation", read_only=False)
                except Exception as e:
                    last = e
        # every slot taken: reuse the investigation session's slot for one read-write transaction
        if self._conn is not None:
            return _ReadWriteOnSession(self._conn)
        raise Unreachable(f"cannot open a connection for the mitigation: {redact.scrub(str(last))}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _ReadWriteOnSession:
    """Borrow the investigation session for one explicit READ WRITE transaction."""

    def __init__(self, conn):
        self._conn = conn

    def execute(self, sql, params=None):
        with self._conn.transaction():
            self._conn.execute("SET TRANSACTION READ WRITE")
            return self._conn.execute(sql, params)

    def close(self) -> None:  # the session is not ours to close
        pass


# -- queries -----------------------------------------------------------------------------------
# Every client backend counts, whatever its state: a pool exhausted by idle sessions is common.
CLIENTS_SQL = """
SELECT pid, usename AS role, datname AS database, application_name, client_addr::text AS client,
       coalesce(state, 'unknown') AS state, backend_start, state_change, query_start,
       extract(epoch FROM now() - state_change) AS seconds_in_state,
       (pid = pg_backend_pid() OR application_name LIKE 'smartops:%') AS is_runbook
FROM pg_stat_activity
WHERE backend_type = 'client backend'
"""


def client_connections(session: Session) -> pd.DataFrame:
    """Every client backend of the server (all databases), one row each."""
    return session.query(CLIENTS_SQL)


def connection_limits(session: Session) -> dict[str, int]:
    """max_connections and the slots reserved for superusers and pg_use_reserved_connections."""
    df = session.query(
        "SELECT name, setting::int AS value FROM pg_settings WHERE name IN "
        "('max_connections','superuser_reserved_connections','reserved_connections')")
    values = dict(zip(df["name"], df["value"]))
    return {k: int(values.get(k, 0)) for k in ("max_connections", "superuser_reserved_connections",
                                                "reserved_connections")}


def current_database(session: Session) -> str:
    return session.scalar("SELECT current_database()")


def database_name(dsn: str) -> str:
    """The database a DSN names (no connection made)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        return str(conninfo_to_dict(dsn).get("dbname") or "?")
    except Exception:
        return "?"
