"""The SmartAmazon API stand-in: a real HTTP service over PostgreSQL and Redis, with fault hooks.

Run as ``python -m smartops_sandbox.api --config STATE.json`` (the sandbox manager does this).
It behaves like the production API where the runbook looks: /health, /metrics, the log lines
``connection pool exhausted`` and ``slow query``, the pg_stat_activity footprint of its pool.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import decimal
import hmac
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

import psycopg
import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

APP_NAME = "smartamazon-api"
SEARCH_SQL = ("SELECT id,name,category,rating,price FROM products "
              "WHERE category = %s ORDER BY rating DESC LIMIT 20")
# What the slow-queries fault deploys: a longer results page (40) ranked within its category. Each
# row runs two correlated counts that idx_products_category_rating answers in microseconds; without
# the index each one is a sequential scan of products. Measured alone on an idle 2-core machine:
# 20 rows took 1.3-1.5 s a search - under the 2 s p95 threshold, so the fault only showed when the
# machine was busy; 40 rows take 2.6-2.9 s (60 rows 4.6-5.3 s, which made every test of it slow);
# with the index ~1 ms.
RANKED_PAGE = 40
RANKED_SEARCH_SQL = (
    "SELECT id,name,category,rating,price,"
    " (SELECT count(*) FROM products b WHERE b.category = p.category AND b.rating > p.rating) + 1 AS category_rank,"
    " (SELECT count(*) FROM products t WHERE t.category = p.category AND t.rating = p.rating) AS same_rating"
    f" FROM products p WHERE category = %s ORDER BY rating DESC LIMIT {RANKED_PAGE}")
CATEGORIES_SQL = "SELECT category, count(*) AS products FROM products GROUP BY category ORDER BY category"
CACHE_TTL = 300
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0)
ROUTES = ("/health", "/metrics", "/api/search", "/api/categories")

log = logging.getLogger("smartamazon-api")


class PoolExhausted(RuntimeError):
    """No connection could be had from the pool within the wait time."""


class ConnectionPool:
    """A fixed-size, lazily filled pool of psycopg connections (autocommit, application_name set)."""

    def __init__(self, dsn: str, size: int = 5, wait_timeout: float = 1.0) -> None:
        self.dsn, self.size, self.wait_timeout = dsn, size, wait_timeout
        self._idle: collections.deque[psycopg.Connection] = collections.deque()
        self._cond = threading.Condition()
        self.created = 0
        self.in_use = 0
        self.last_error = ""

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, connect_timeout=2, application_name=APP_NAME, autocommit=True)

    def get(self, timeout: float | None = None) -> psycopg.Connection:
        deadline = time.monotonic() + (self.wait_timeout if timeout is None else timeout)
        while True:
            with self._cond:
                if self._idle:
                    self.in_use += 1
                    return self._idle.pop()
                create = self.created < self.size
                if create:
                    self.created += 1
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PoolExhausted(f"{self.in_use}/{self.size} in use; last error: {self.last_error or '-'}")
                    self._cond.wait(remaining)
                    continue
            try:
                conn = self.connect()
            except psycopg.OperationalError as e:
                with self._cond:
                    self.created -= 1
                    self.last_error = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PoolExhausted(f"{self.in_use}/{self.size} in use; last error: {self.last_error}")
                    self._cond.wait(min(0.1, remaining))
                continue
            with self._cond:
                self.in_use += 1
            return conn

    def put(self, conn: psycopg.Connection, discard: bool = False) -> None:
        with self._cond:
            self.in_use -= 1
            if discard or conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.created -= 1
                with contextlib.suppress(Exception):
                    conn.close()
            else:
                self._idle.append(conn)
            self._cond.notify()

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None):
        conn = self.get(timeout)
        broken = False
        try:
            yield conn
        except psycopg.OperationalError:
            broken = True
            raise
        finally:
            self.put(conn, discard=broken)

    def drain_idle(self) -> int:
        """Close the idle connections (new ones pick up changed role settings)."""
        n = 0
        with self._cond:
            while self._idle:
                with contextlib.suppress(Exception):
                    self._idle.pop().close()
                self.created -= 1
                n += 1
            self._cond.notify_all()
        return n

    def close(self) -> None:
        with self._cond:
            while self._idle:
                with contextlib.suppress(Exception):
                    self._idle.pop().close()


@dataclass
class Fault:
    """A fault the sandbox can inject into the running API; heal must be idempotent."""

    description: str
    inject: Callable[["App"], dict]
    heal: Callable[["App"], dict]


class Traffic:
    """Simulated users: threads requesting this API until ``duration_s`` passes or :meth:`stop`.

    Bounded in time so that a forgotten fault does not load the machine forever.
    """

    def __init__(self, base_url: str, next_path: Callable[[], str], threads: int, duration_s: float,
                 pause_s: float = 0.0, headers: dict | None = None) -> None:
        self.base_url, self.next_path, self.pause_s = base_url, next_path, pause_s
        self.headers = headers or {}
        self.deadline = time.monotonic() + duration_s
        self.requests = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True, name=f"traffic-{i}")
                         for i in range(threads)]

    def start(self) -> "Traffic":
        for t in self._threads:
            t.start()
        return self

    def _loop(self) -> None:
        import urllib.request
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            req = urllib.request.Request(self.base_url + self.next_path(), headers=self.headers)
            with contextlib.suppress(Exception):
                with urllib.request.urlopen(req, timeout=15) as r:
                    r.read()
            self.requests += 1
            if self.pause_s:
                self._stop.wait(self.pause_s)

    def stop(self, timeout: float = 15) -> dict:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        return {"requests": self.requests}


class App:
    """State shared by request threads: pool, Redis client, metrics, active faults."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.token = cfg["token"]
        self.slow_query_s = cfg["api"].get("slow_query_ms", 500) / 1000
        self.pool = ConnectionPool(cfg["postgres"]["app_dsn"], int(cfg["api"].get("pool_size", 5)))
        self.redis = redis.Redis.from_url(cfg["redis"]["url"], socket_timeout=1, socket_connect_timeout=1)
        self.cache_enabled = True
        self.cache_ttl = CACHE_TTL
        self.search_sql = SEARCH_SQL
        self.traffic: dict[str, Traffic] = {}
        self.base_url = f"http://127.0.0.1:{cfg['api']['port']}"
        self.active_faults: set[str] = set()
        self.leaked: list[psycopg.Connection] = []          # opened outside the pool, never returned
        self.leaked_from_pool: list[psycopg.Connection] = []
        self.fault_lock = threading.Lock()
        r = self.registry = CollectorRegistry()
        self.m_latency = Histogram("http_request_duration_seconds", "HTTP request latency",
                                   ["method", "handler", "status"], buckets=BUCKETS, registry=r)
        Gauge("smartamazon_db_pool_in_use", "Connections checked out of the API pool",
              registry=r).set_function(lambda: self.pool.in_use)
        Gauge("smartamazon_db_pool_size", "Configured size of the API pool",
              registry=r).set_function(lambda: self.pool.size)
        Gauge("smartamazon_db_leaked_connections", "Connections the API holds and never returns",
              registry=r).set_function(lambda: len(self.leaked) + len(self.leaked_from_pool))
        self.m_hits = Counter("smartamazon_cache_hits", "Cache hits", registry=r)
        self.m_misses = Counter("smartamazon_cache_misses", "Cache misses", registry=r)
        self.m_in_flight = Gauge("smartamazon_http_requests_in_flight", "HTTP requests being served", registry=r)
        r.register(ExporterStandIn(self))

    # -- data access ---------------------------------------------------------------------------
    def query(self, sql: str, params: tuple = ()) -> list[dict]:
        with self.pool.connection() as conn:
            t0 = time.monotonic()
            cur = conn.execute(sql, params)
            cols = [d.name for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
            took = time.monotonic() - t0
        if took > self.slow_query_s:
            log.warning("slow query duration_ms=%.0f sql=%r params=%r", took * 1000, sql, params)
        return rows

    def cached(self, key: str, load: Callable[[], list[dict]], use_cache: bool = True) -> tuple[list[dict], bool]:
        if not use_cache:  # an explicit bypass is no cache lookup: neither hit nor miss
            return load(), False
        if self.cache_enabled:
            try:
                raw = self.redis.get(key)
                if raw is not None:
                    self.m_hits.inc()
                    return json.loads(raw), True
            except redis.RedisError as e:
                log.error("cache read failed key=%s error=%s", key, e)
        self.m_misses.inc()
        rows = load()
        if self.cache_enabled:
            try:
                self.redis.set(key, json.dumps(rows, default=_json_default), ex=self.cache_ttl)
            except redis.RedisError as e:
                log.error("cache write failed key=%s error=%s", key, e)
        return rows, False

    def health(self) -> tuple[int, dict]:
        body = {"status": "ok", "database": "ok", "redis": "ok"}
        try:
            with self.pool.connection(timeout=1.0) as conn:
                conn.execute("SELECT 1").fetchone()
        except PoolExhausted as e:
            log.error("connection pool exhausted (health check): %s", e)
            body["database"] = f"error: connection pool exhausted ({e})"
        except psycopg.Error as e:
            body["database"] = f"error: {str(e).strip() or type(e).__name__}"
        try:
            self.redis.ping()
        except redis.RedisError as e:
            body["redis"] = f"error: {e}"
        if body["database"] != "ok" or body["redis"] != "ok":
            body["status"] = "unhealthy"
            return 503, body
        return 200, body

    # -- faults --------------------------------------------------------------------------------
    def inject(self, name: str) -> dict:
        fault = FAULTS[name]
        with self.fault_lock:
            result = fault.inject(self)
            self.active_faults.add(name)
        log.warning("fault injected: %s %s", name, json.dumps(result, default=str))
        return result

    def heal(self) -> dict:
        out = {}
        with self.fault_lock:
            for name, fault in FAULTS.items():
                out[name] = fault.heal(self)
            self.active_faults.clear()
        log.warning("faults healed: %s", json.dumps(out, default=str))
        return out

    def start_traffic(self, name: str, **kwargs: Any) -> dict:
        self.stop_traffic(name)
        self.traffic[name] = Traffic(self.base_url, **kwargs).start()
        return {"traffic_threads": kwargs.get("threads"), "traffic_seconds": kwargs.get("duration_s")}

    def stop_traffic(self, name: str) -> dict:
        t = self.traffic.pop(name, None)
        return t.stop() if t else {}

    def shutdown(self) -> None:
        for name in list(self.traffic):
            self.stop_traffic(name)
        _heal_connection_leak(self)
        self.pool.close()


class ExporterStandIn:
    """What postgres_exporter, redis_exporter and node_exporter would export, read at scrape time.

    Same metric names as those exporters (``pg_stat_activity_count{datname,state}``,
    ``pg_settings_max_connections``, ``redis_memory_used_bytes``, ``redis_memory_max_bytes``,
    ``node_filesystem_avail_bytes``...), so the alert rules in ``deploy/prometheus/rules.yml`` are
    the ones a production Prometheus with those exporters evaluates. PostgreSQL is read over a
    short-lived connection of the monitoring role (it may use a reserved slot when the app has
    taken every ordinary one), never from the API's pool. A failing source gives ``*_up 0``.
    """

    PG_SQL = ("SELECT datname, coalesce(state, 'unknown'), count(*) FROM pg_stat_activity "
              "WHERE backend_type = 'client backend' AND application_name <> %s GROUP BY 1, 2")
    PG_APP = "smartamazon-api-metrics"

    def __init__(self, app: "App") -> None:
        self.app = app

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        import os

        pg_up = GaugeMetricFamily("pg_up", "1 if PostgreSQL answered the metrics query")
        acts = GaugeMetricFamily("pg_stat_activity_count", "Client connections by database and state",
                                 labels=["datname", "state"])
        maxc = GaugeMetricFamily("pg_settings_max_connections", "PostgreSQL max_connections")
        try:
            dsn = self.app.cfg["postgres"].get("monitor_dsn") or self.app.pool.dsn
            with psycopg.connect(dsn, connect_timeout=2, application_name=self.PG_APP, autocommit=True) as c:
                for db, state, n in c.execute(self.PG_SQL, (self.PG_APP,)).fetchall():
                    acts.add_metric([db or "", state], n)
                maxc.add_metric([], int(c.execute("SHOW max_connections").fetchone()[0]))
            pg_up.add_metric([], 1)
            yield from (acts, maxc)
        except Exception:  # noqa: BLE001 - a scrape reports the source down, it does not fail
            pg_up.add_metric([], 0)
        yield pg_up
        redis_up = GaugeMetricFamily("redis_up", "1 if Redis answered INFO memory")
        try:
            info = self.app.redis.info("memory")
            yield GaugeMetricFamily("redis_memory_used_bytes", "Redis used_memory", value=info["used_memory"])
            yield GaugeMetricFamily("redis_memory_max_bytes", "Redis maxmemory (0 = no limit)",
                                    value=info.get("maxmemory", 0))
            redis_up.add_metric([], 1)
        except Exception:  # noqa: BLE001
            redis_up.add_metric([], 0)
        yield redis_up
        path = self.app.cfg.get("state_dir") or "."
        try:
            st = os.statvfs(path)
            avail = GaugeMetricFamily("node_filesystem_avail_bytes", "Bytes available to non-root users",
                                      labels=["mountpoint"])
            size = GaugeMetricFamily("node_filesystem_size_bytes", "Filesystem size", labels=["mountpoint"])
            avail.add_metric([path], st.f_bavail * st.f_frsize)
            size.add_metric([path], st.f_blocks * st.f_frsize)
            yield from (avail, size)
        except OSError:
            pass


def _json_default(o: Any) -> Any:
    if isinstance(o, decimal.Decimal):
        return float(o)
    return str(o)


# -- the fault registry: name -> inject/heal --------------------------------------------------
def _is_slot_refusal(e: Exception) -> bool:
    s = str(e).lower()
    return "too many clients" in s or "remaining connection slots are reserved" in s or "reserved for" in s


def _inject_connection_leak(app: App) -> dict:
    """Check out every pool connection and open more until PostgreSQL refuses; keep them all idle."""
    while True:
        try:
            conn = app.pool.get(timeout=0)
        except PoolExhausted:
            break
        app.leaked_from_pool.append(conn)
    refusal = ""
    cap = int(app.cfg["postgres"].get("max_connections", 100))
    for _ in range(cap):
        try:
            conn = psycopg.connect(app.pool.dsn, connect_timeout=2, application_name=APP_NAME, autocommit=True)
        except psycopg.OperationalError as e:
            if _is_slot_refusal(e):
                refusal = str(e).strip()
                break
            raise
        conn.execute(SEARCH_SQL, ("protein",)).fetchall()   # a leaked handler ran its query, then forgot the connection
        app.leaked.append(conn)
    return {"leaked_from_pool": len(app.leaked_from_pool), "leaked_extra": len(app.leaked), "refusal": refusal}


LEAK_GONE_TIMEOUT_S = 10.0


def _heal_connection_leak(app: App) -> dict:
    """Close every leaked connection and return once PostgreSQL has ended their sessions.

    A client's close only asks the server to end its backend: under load ~100 backends take a
    moment to go, and a confirming runbook run started in that moment would still see the leak.
    """
    pids = [c.info.backend_pid for c in app.leaked + app.leaked_from_pool if not c.closed]
    for conn in app.leaked:
        with contextlib.suppress(Exception):
            conn.close()
    app.leaked.clear()
    for conn in app.leaked_from_pool:
        app.pool.put(conn, discard=True)
    app.leaked_from_pool.clear()
    remaining = _wait_sessions_gone(app, pids) if pids else 0
    return {"closed": len(pids), **({"still_open": remaining} if remaining else {})}


def _wait_sessions_gone(app: App, pids: list[int], timeout: float = LEAK_GONE_TIMEOUT_S) -> int:
    """Poll pg_stat_activity until none of ``pids`` is left (bounded); how many still were."""
    deadline, left, error = time.monotonic() + timeout, len(pids), ""
    while time.monotonic() < deadline:
        try:   # while the slots are still full the pool's login may be refused: try again
            with app.pool.connection(timeout=1) as c:
                left = c.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0]
        except (psycopg.Error, PoolExhausted) as e:
            error = f" (last check failed: {e})"
        else:
            if not left:
                return 0
        time.sleep(0.05)
    log.warning("heal: %d leaked sessions may still be open after %.0f s%s", left, timeout, error)
    return left


def _random_search() -> str:
    import random
    from .postgres_server import CATEGORIES
    return f"/api/search?q={random.choice(CATEGORIES)}"


def _browse() -> str:
    import random
    return "/api/categories" if random.random() < 0.2 else _random_search()


TRAFFIC_SECONDS = 300      # simulated users stop on their own after this, or on heal
BURST_SECONDS = 60


def _inject_cache_bypass(app: App) -> dict:
    app.cache_enabled = False
    app.redis.flushdb()
    users = app.start_traffic("cache-bypass", next_path=_browse, threads=1, duration_s=TRAFFIC_SECONDS,
                              pause_s=0.2)
    return {"cache_enabled": False, "flushed": True, **users}


def _heal_cache_bypass(app: App) -> dict:
    app.stop_traffic("cache-bypass")
    app.cache_enabled = True
    return {"cache_enabled": True}


def _inject_cold_cache(app: App) -> dict:
    """Redis flushed and a bad config push set the cache TTL to 2 s: keys expire before reuse."""
    app.redis.flushdb()
    app.cache_ttl = 2
    users = app.start_traffic("cold-cache", next_path=_browse, threads=1, duration_s=TRAFFIC_SECONDS,
                              pause_s=0.2)
    return {"flushed": True, "cache_ttl_s": app.cache_ttl, **users}


def _heal_cold_cache(app: App) -> dict:
    app.stop_traffic("cold-cache")
    app.cache_ttl = CACHE_TTL
    return {"cache_ttl_s": app.cache_ttl}


def _inject_high_load(app: App) -> dict:
    """A bounded burst of concurrent users on cached pages."""
    return app.start_traffic("high-load", next_path=_browse, threads=8, duration_s=BURST_SECONDS)


def _heal_high_load(app: App) -> dict:
    return app.stop_traffic("high-load")


def _inject_slow_queries(app: App) -> dict:
    """Drop the index, deploy the ranked search, no parallel scans for the app role, add users.

    The simulated users bypass the cache (``Cache-Control: no-cache`` with the sandbox token) so
    that each of their searches reaches PostgreSQL, as a stream of distinct searches would.
    """
    from .postgres_server import INDEX_NAME
    with app.pool.connection(timeout=5) as conn:
        conn.execute(f"DROP INDEX IF EXISTS {INDEX_NAME}")
        conn.execute("ALTER ROLE CURRENT_USER SET max_parallel_workers_per_gather = 0")
    app.pool.drain_idle()
    app.search_sql = RANKED_SEARCH_SQL
    users = app.start_traffic("slow-queries", next_path=_random_search, threads=2, duration_s=TRAFFIC_SECONDS,
                              pause_s=0.1, headers={"Cache-Control": "no-cache", "X-Sandbox-Token": app.token})
    return {"dropped_index": INDEX_NAME, "search": "ranked", "max_parallel_workers_per_gather": 0, **users}


def _heal_slow_queries(app: App) -> dict:
    from .postgres_server import INDEX_DDL, INDEX_NAME
    app.stop_traffic("slow-queries")
    app.search_sql = SEARCH_SQL
    with app.pool.connection(timeout=5) as conn:
        conn.execute("ALTER ROLE CURRENT_USER RESET max_parallel_workers_per_gather")
    app.pool.drain_idle()
    with app.pool.connection(timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (INDEX_NAME,)).fetchone()
        if exists:
            return {"index": "present"}
        conn.execute(INDEX_DDL)
    return {"index": "recreated"}


FAULTS: dict[str, Fault] = {
    "connection-leak": Fault("API leaks DB connections until every ordinary slot is taken",
                             _inject_connection_leak, _heal_connection_leak),
    "cache-bypass": Fault("Redis flushed and the API stops using the cache",
                          _inject_cache_bypass, _heal_cache_bypass),
    "slow-queries": Fault("idx_products_category_rating dropped under a ranked search and uncached users: "
                          "each search does sequential scans (seconds)",
                          _inject_slow_queries, _heal_slow_queries),
    "cold-cache": Fault("Redis flushed and cache TTL set to 2 s under browsing users: most lookups miss",
                        _inject_cold_cache, _heal_cold_cache),
    "high-load": Fault(f"a {BURST_SECONDS} s burst of 8 concurrent users on cached pages",
                       _inject_high_load, _heal_high_load),
}


# -- HTTP ------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    app: App  # set on the subclass built in serve()
    server_version = "SmartAmazonAPI/sandbox"

    def log_message(self, format: str, *args: Any) -> None:  # http.server's own lines
        pass

    def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body, default=_json_default).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self._status = status

    def _handle(self, method: str) -> None:
        t0 = time.monotonic()
        url = urlparse(self.path)
        handler = url.path if url.path in ROUTES else ("/admin" if url.path.startswith("/admin/") else "other")
        self._status = 500
        self.app.m_in_flight.inc()
        try:
            self._route(method, url)
        except PoolExhausted as e:
            log.error("connection pool exhausted: %s %s: %s", method, url.path, e)
            self._send(503, {"error": "connection pool exhausted", "detail": str(e)})
        except psycopg.Error as e:
            log.error("database error: %s %s: %s", method, url.path, str(e).strip())
            self._send(503, {"error": "database error", "detail": str(e).strip()})
        except Exception as e:  # noqa: BLE001 - a service answers 500, it does not die
            log.exception("unhandled error: %s %s", method, url.path)
            with contextlib.suppress(Exception):
                self._send(500, {"error": type(e).__name__, "detail": str(e)})
        self.app.m_in_flight.dec()
        took = time.monotonic() - t0
        self.app.m_latency.labels(method, handler, str(self._status)).observe(took)
        level = logging.INFO if self._status < 400 else logging.ERROR
        if handler != "/metrics" or self._status >= 400:
            log.log(level, "%s %s %d %.3fs", method, self.path, self._status, took)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _route(self, method: str, url) -> None:
        app, path = self.app, url.path
        if method == "GET" and path == "/health":
            status, body = app.health()
            self._send(status, body)
        elif method == "GET" and path == "/metrics":
            self._send(200, generate_latest(app.registry), CONTENT_TYPE_LATEST)
        elif method == "GET" and path == "/api/search":
            q = (parse_qs(url.query).get("q") or [""])[0].strip().lower()
            if not q:
                self._send(400, {"error": "missing q"})
                return
            sql = app.search_sql
            rows, hit = app.cached(f"search:{q}", lambda: app.query(sql, (q,)), use_cache=not self._bypass())
            self._send(200, {"query": q, "cached": hit, "count": len(rows), "results": rows})
        elif method == "GET" and path == "/api/categories":
            rows, hit = app.cached("categories", lambda: app.query(CATEGORIES_SQL))
            self._send(200, {"cached": hit, "categories": rows})
        elif path.startswith("/admin/"):
            self._admin(method, path)
        else:
            self._send(404, {"error": "not found"})

    def _bypass(self) -> bool:
        """The sandbox's simulated users may skip the cache (no-cache with the sandbox token)."""
        return (self.headers.get("Cache-Control", "") == "no-cache"
                and hmac.compare_digest(self.headers.get("X-Sandbox-Token", "").encode(), self.app.token.encode()))

    def _admin(self, method: str, path: str) -> None:
        token = self.headers.get("X-Sandbox-Token", "")
        if not hmac.compare_digest(token.encode(), self.app.token.encode()):
            self._send(403, {"error": "forbidden"})
            return
        parts = path.strip("/").split("/")
        if method == "GET" and parts == ["admin", "faults"]:
            self._send(200, {"known": {n: f.description for n, f in FAULTS.items()},
                             "active": sorted(self.app.active_faults)})
        elif method == "POST" and len(parts) == 3 and parts[:2] == ["admin", "fault"]:
            if parts[2] not in FAULTS:
                self._send(404, {"error": f"unknown fault {parts[2]!r}", "known": sorted(FAULTS)})
                return
            self._send(200, {"fault": parts[2], "result": self.app.inject(parts[2])})
        elif method == "POST" and parts == ["admin", "heal"]:
            self._send(200, {"healed": self.app.heal()})
        else:
            self._send(404, {"error": "not found"})


def _grow_until_killed(signum, frame) -> None:
    """The api-oom fault (smartops_sandbox.host_faults): allocate until the container's memory
    limit kills the process, as a leak would. Installed only with SMARTAMAZON_MEMORY_FAULT=1."""
    log.error("memory fault: allocating until killed")
    hog = []
    while True:
        hog.append(bytearray(8 << 20))
        hog[-1][::4096] = b"x" * len(hog[-1][::4096])   # touch every page: resident, not just reserved


def serve(cfg: dict[str, Any]) -> None:
    app = App(cfg)
    handler = type("BoundHandler", (Handler,), {"app": app})
    # Compose replicas on the host network share the port (the kernel spreads connections)
    reuse = {"allow_reuse_port": os.environ.get("SMARTAMAZON_REUSE_PORT") == "1"}
    server = type("Server", (ThreadingHTTPServer,), reuse)(("127.0.0.1", int(cfg["api"]["port"])), handler)
    server.daemon_threads = True

    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    if os.environ.get("SMARTAMAZON_MEMORY_FAULT") == "1":   # only where a memory limit stops it
        signal.signal(signal.SIGUSR1, _grow_until_killed)
    log.info("SmartAmazon API listening on http://127.0.0.1:%s pool_size=%d", cfg["api"]["port"], app.pool.size)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        server.server_close()
        app.shutdown()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="sandbox state.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s smartamazon-api %(message)s")
    with open(args.config) as f:
        serve(json.load(f))


if __name__ == "__main__":
    main()
