"""The team's index in PostgreSQL: the same rows as :mod:`.index_sqlite`, one chain for many writers.

Tables live in the schema ``smartops_archive`` of the database the DSN names. Full-text search is a
``tsvector`` with a GIN index (``websearch_to_tsquery``: words, "a phrase", ``or``, ``-word``).
Appends are serialised across machines by a transaction-scoped advisory lock taken before the
writer reads the chain tip, so the chain never forks; ``seq`` (an identity column) gives the order.
Every connection has ``connect_timeout`` and a ``statement_timeout``/``lock_timeout``, so an
unreachable or stuck server is a one-line :class:`IndexUnavailable`, never a hang.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator
from smartops_nb.support.reasons import flat

from .entries import (GENESIS, LIST_COLUMNS, ROW_COLUMNS, TEXT_COLUMNS, Appender, Index, IndexMissing,
                      IndexUnavailable, chained, claim_in, now, public_row, where)
from .plans import DDL as PLANS_DDL

SCHEMA = "smartops_archive"
CONNECT_TIMEOUT_S = 5
#: How long a writer waits for the chain lock (other writers hold it for one upload + insert).
LOCK_TIMEOUT_S = 60
STATEMENT_TIMEOUT_S = 120
#: pg_advisory_xact_lock key of the chain tip ("smartops" in ASCII, folded into a bigint).
CHAIN_LOCK = 0x736D6172746F7073

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
SET search_path TO {SCHEMA};
CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- chain order
    name             text NOT NULL UNIQUE,
    path             text NOT NULL,
    sha256           text NOT NULL,
    size             bigint NOT NULL,
    prev_hash        text NOT NULL,
    entry_hash       text NOT NULL UNIQUE,
    runbook          text NOT NULL,
    title            text NOT NULL DEFAULT '',
    severity         text NOT NULL DEFAULT '',
    environment      text NOT NULL DEFAULT '',
    incident_id      text NOT NULL DEFAULT '',
    status           text NOT NULL DEFAULT '',
    confirmed        integer NOT NULL DEFAULT 0,
    causes           text NOT NULL DEFAULT '',
    diagnosis        text NOT NULL DEFAULT '',
    detected_at      text,
    started_at       text NOT NULL,
    finished_at      text,
    mode             text NOT NULL DEFAULT '',
    operator         text NOT NULL DEFAULT '',
    actions_executed text NOT NULL DEFAULT '[]',
    findings         integer NOT NULL DEFAULT 0,
    indexed_at       text NOT NULL);
-- one entry after each: a second writer that missed the lock could not fork the chain
CREATE UNIQUE INDEX IF NOT EXISTS records_prev ON records (prev_hash);
CREATE TABLE IF NOT EXISTS record_causes (cause text NOT NULL, seq bigint NOT NULL REFERENCES records ON DELETE CASCADE,
    PRIMARY KEY (cause, seq));
CREATE INDEX IF NOT EXISTS records_started ON records (started_at, seq);
{''.join(f"CREATE INDEX IF NOT EXISTS records_{c} ON records ({c}, started_at);"
         for c in ("runbook", "severity", "environment", "status", "incident_id"))}
CREATE TABLE IF NOT EXISTS records_fts (
    seq  bigint PRIMARY KEY REFERENCES records ON DELETE CASCADE,
    body text NOT NULL,      -- what ts_headline quotes
    doc  tsvector NOT NULL);
CREATE INDEX IF NOT EXISTS records_fts_doc ON records_fts USING gin (doc);
CREATE TABLE IF NOT EXISTS tombstones (name text PRIMARY KEY, sha256 text NOT NULL, pruned_at text NOT NULL,
    why text NOT NULL);
{PLANS_DDL}"""
#: smartops serve's alert episodes (idempotent intake), made by the first claim, apart from _DDL.
_EPISODES_DDL = ("CREATE TABLE IF NOT EXISTS alert_episodes (incident_id text NOT NULL, kind text NOT NULL, "
                 "first_at text NOT NULL, run_at text NOT NULL, repeats integer NOT NULL DEFAULT 0, "
                 "PRIMARY KEY (incident_id, kind))")
#: pg_advisory_xact_lock key of the episode claims ("episodes" in ASCII)
EPISODE_LOCK = 0x657069736F646573

# weights: the record's own words (name, runbook, incident) first, then diagnosis, findings, the rest
_WEIGHTS = {"record": "A", "diagnosis": "A", "findings": "B", "parameters": "C", "outputs": "D"}
SEARCH_DOC = " || ".join(f"setweight(to_tsvector('simple', %({c})s), '{w}')" for c, w in _WEIGHTS.items())


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        d = conninfo_to_dict(dsn)
    except Exception:
        return "(an unparsable DSN)"
    user = f"{d['user']}@" if d.get("user") else ""
    return f"postgresql://{user}{d.get('host', 'localhost')}:{d.get('port', 5432)}/{d.get('dbname', '')}"


def check_dsn(dsn: str) -> None:
    """Raise ValueError (one line) when ``dsn`` is not a PostgreSQL connection string or URL."""
    from psycopg.conninfo import conninfo_to_dict

    if not (dsn.startswith(("postgresql://", "postgres://")) or "=" in dsn):
        raise ValueError(f"--index {dsn!r} is neither 'sqlite' nor a PostgreSQL DSN (postgresql://user@host/db)")
    try:
        conninfo_to_dict(dsn)
    except Exception as e:
        raise ValueError(f"--index is not a valid PostgreSQL DSN: {flat(e)}") from None


class IndexRefused(ValueError):
    """The server answered but refused the DSN (no such database or role, bad password): bad input."""


class _PgAppender(Appender):
    def __init__(self, con):
        self.con = con

    def _tip(self) -> str:
        row = self.con.execute("SELECT entry_hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        return row["entry_hash"] if row else GENESIS

    def append(self, row, words):
        row = chained(self._tip(), row)
        self._insert(row, words)
        return row

    def copy(self, row, words):
        self._insert({c: row[c] for c in ROW_COLUMNS}, words)

    def _insert(self, row, words):
        cols = list(row)
        seq = self.con.execute(f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
                               "RETURNING seq", [row[c] for c in cols]).fetchone()["seq"]
        for cause in set(row["causes"].split()):
            self.con.execute("INSERT INTO record_causes (cause, seq) VALUES (%s, %s)", (cause, seq))
        body = "\n".join(words[c] for c in TEXT_COLUMNS if words.get(c))
        self.con.execute(f"INSERT INTO records_fts (seq, body, doc) VALUES (%(seq)s, %(body)s, {SEARCH_DOC})",
                         {"seq": seq, "body": body, **{c: words.get(c, "") for c in TEXT_COLUMNS}})

    def has(self, name):
        return self.con.execute("SELECT 1 FROM records WHERE name = %s", (name,)).fetchone() is not None

    def empty(self):
        return self.con.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None

    def tombstone(self, name, sha256, why):
        self.con.execute("INSERT INTO tombstones VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
                         (name, sha256, now(), why))

    def set_meta(self, key, value):
        self.con.execute("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                         (key, value))


class PostgresIndex(Index):
    problem_name = "postgresql index"

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.label = redacted(dsn)

    # -- connections ------------------------------------------------------------------------------
    @contextmanager
    def connection(self, *, create: bool = False) -> Iterator[Any]:
        import psycopg
        from psycopg.rows import dict_row

        try:
            con = psycopg.connect(self.dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True, row_factory=dict_row,
                                  application_name="smartops-archive")
        except psycopg.OperationalError as e:
            reason = flat(e)
            if any(m in reason for m in ("does not exist", "authentication failed", "no password supplied",
                                         "not permitted to log in")):
                raise IndexRefused(f"the PostgreSQL index {self.label} refused the connection: {reason}") from None
            raise IndexUnavailable(f"PostgreSQL index {self.label} unreachable: {reason}") from None
        try:
            con.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT_S}s'")
            con.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
            made = con.execute("SELECT to_regclass(%s) AS t", (f"{SCHEMA}.plan_decisions",)).fetchone()["t"]  # the newest table
            if create and not made:
                with con.transaction():
                    # two first writers racing CREATE ... IF NOT EXISTS collide in the catalog: one at a time
                    con.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
                    con.execute(_DDL)
                    con.execute("INSERT INTO meta VALUES ('created_at', %s) ON CONFLICT DO NOTHING", (now(),))
            elif not create and not con.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)).fetchone():
                raise IndexMissing(f"no index in {self.label} (nothing was archived there yet)")
            con.execute(f"SET search_path TO {SCHEMA}")
            yield con
        except psycopg.Error as e:
            raise IndexUnavailable(f"PostgreSQL index {self.label}: {flat(e)}") from None
        finally:
            con.close()

    # -- reading ------------------------------------------------------------------------------------
    def rows(self):
        with self.connection() as con:
            return [dict(r) for r in con.execute(f"SELECT seq, {', '.join(ROW_COLUMNS)} FROM records ORDER BY seq")]

    def list(self, limit, **filters):
        clause, args = where([], [], "%s", **filters)
        sql = (f"SELECT {', '.join('r.' + c for c in LIST_COLUMNS)} FROM records r{clause} "
               f"ORDER BY r.started_at DESC, r.seq DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self.connection() as con:
            return [public_row(r) for r in con.execute(sql, args)]

    def search(self, text, limit, **filters):
        clause, args = where(["f.doc @@ q.q"], [], "%s", **filters)
        inner = (f"SELECT r.*, f.body, ts_rank_cd(f.doc, q.q) AS rank, q.q FROM records_fts f "
                 f"JOIN records r ON r.seq = f.seq, websearch_to_tsquery('simple', %s) AS q(q){clause} "
                 f"ORDER BY rank DESC, r.started_at DESC" + (f" LIMIT {int(limit)}" if limit else ""))
        sql = (f"SELECT {', '.join('m.' + c for c in LIST_COLUMNS)}, "
               f"ts_headline('simple', m.body, m.q, 'StartSel=[, StopSel=], MaxWords=12, MinWords=4') AS match "
               f"FROM ({inner}) m ORDER BY m.rank DESC, m.started_at DESC")
        with self.connection() as con:
            return [public_row(r) for r in con.execute(sql, [text, *args])]

    def entry(self, name):
        try:
            with self.connection() as con:
                row = con.execute("SELECT sha256, entry_hash FROM records WHERE name = %s", (name,)).fetchone()
        except (IndexMissing, IndexUnavailable):
            return None
        return dict(row) if row else None

    def tombstones(self):
        try:
            with self.connection() as con:
                return {r["name"]: dict(r) for r in con.execute("SELECT * FROM tombstones")}
        except IndexMissing:
            return {}

    def meta(self):
        try:
            with self.connection() as con:
                return {r["key"]: r["value"] for r in con.execute("SELECT key, value FROM meta")}
        except IndexMissing:
            return {}

    # -- writing ----------------------------------------------------------------------------------
    @contextmanager
    def appending(self) -> Iterator[Appender]:
        with self._locked(CHAIN_LOCK) as con:
            yield _PgAppender(con)

    @contextmanager
    def _locked(self, key: int) -> Iterator[Any]:
        """A transaction holding the advisory lock ``key`` (made if missing: the index's tables)."""
        import psycopg

        with self.connection(create=True) as con:
            try:
                with con.transaction():
                    con.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
                    yield con
            except psycopg.Error as e:
                raise IndexUnavailable(f"PostgreSQL index {self.label}: {flat(e)}") from None

    # -- alert episodes (smartops serve's idempotent intake) -------------------------------------------
    @contextmanager
    def _episodes(self) -> Iterator[Any]:
        """A transaction holding the episode lock (not the chain's: an upload must not delay intake), the
        table made if missing; replicas claim one at a time."""
        with self._locked(EPISODE_LOCK) as con:
            con.execute(_EPISODES_DDL)
            yield con

    def claim_episode(self, incident_id, kind, recheck_after=0.0):
        with self._episodes() as con:
            return claim_in(con, "%s", incident_id, kind, recheck_after)

    def release_episode(self, incident_id, kind):
        with self._episodes() as con:
            con.execute("DELETE FROM alert_episodes WHERE incident_id = %s AND kind = %s", (incident_id, kind))

    placeholder = "%s"

    def tables(self, block, *, write=False):
        return tables_db(self, *BLOCKS[block], write=write)

    def rebuild(self, describe_all, out):
        with self.appending() as tx:
            con = tx.con
            old = {r["name"]: r["sha256"] for r in con.execute("SELECT name, sha256 FROM records")}
            out.previous = len(old)
            described = describe_all()
            con.execute("TRUNCATE records, record_causes, records_fts, tombstones")
            for row, words in described:
                tx.append(row, words)
            tx.set_meta("reindexed_at", now())
        return old


# ==== post-incident checklist (smartops_nb/postincident) ============================================
# The same tables as index_sqlite.POSTINCIDENT_DDL, in the index's schema: every replica and machine
# of the team sees one checklist and one set of idempotency keys per incident.
POSTINCIDENT_DDL = f"""
SET search_path TO {SCHEMA};
CREATE TABLE IF NOT EXISTS postincident_items (incident_id text NOT NULL, item text NOT NULL, status text NOT NULL,
    at text NOT NULL, by_whom text NOT NULL DEFAULT '', link text NOT NULL DEFAULT '', error text NOT NULL DEFAULT '',
    detail text NOT NULL DEFAULT '{{}}', PRIMARY KEY (incident_id, item));
CREATE TABLE IF NOT EXISTS postincident_keys (key text PRIMARY KEY, incident_id text NOT NULL, item text NOT NULL,
    ref text NOT NULL DEFAULT '', link text NOT NULL DEFAULT '', claimed_at text NOT NULL, done_at text);
CREATE TABLE IF NOT EXISTS lessons (id text PRIMARY KEY, incident_id text NOT NULL, runbook text NOT NULL,
    text text NOT NULL, by_whom text NOT NULL DEFAULT '', at text NOT NULL);
CREATE INDEX IF NOT EXISTS lessons_runbook ON lessons (runbook, at);
"""


# ==== end of post-incident checklist ================================================================


# ==== people: personal tokens (smartops_nb/people/tokens.py) ========================================
# Only a SHA-256 hash of each token is kept: a team shares them through this index.
PEOPLE_DDL = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.tokens (id text PRIMARY KEY, hash text NOT NULL UNIQUE, user_name text NOT NULL,
    role text NOT NULL, created_at text NOT NULL, created_by text NOT NULL DEFAULT '', expires_at text,
    revoked_at text);
"""


#: The blocks of tables beside the records' (:meth:`PostgresIndex.tables`): name → (newest table, DDL).
BLOCKS = {"postincident": ("lessons", POSTINCIDENT_DDL), "people": ("tokens", PEOPLE_DDL)}


@contextmanager
def tables_db(index: PostgresIndex, newest: str, ddl: str, *, write: bool = False) -> Iterator[Any]:
    """The index with a block of tables beside the records' (made by ``ddl``, one maker at a time, when
    ``newest`` is missing and ``write``); None when reading an index without them."""
    try:
        with index.connection(create=write) as con:
            made = con.execute("SELECT to_regclass(%s) AS t", (f"{SCHEMA}.{newest}",)).fetchone()["t"]
            if not made and not write:
                yield None
                return
            if not made:
                with con.transaction():
                    con.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK,))
                    con.execute(ddl)
            yield con
    except IndexMissing:
        if write:
            raise
        yield None
# ==== end of people =================================================================================
