"""``smartops serve``: Alertmanager's webhook in, incident records out.

``POST /alerts`` (any path: ``/healthz`` answers GET only) takes Alertmanager's webhook payload (version "4").
Each alert is matched against the routes file (``parameters/routes.yaml``); a firing alert gets a
runbook run, a resolved one a confirming run when its route asks for it. The answer comes at once
(202, the accepted runs). Two modes share the routing, dedup keys and run code:

- in-process (the default): the runs go through a bounded queue to a fixed number of worker
  threads, each run on a warm kernel from :class:`~smartops_nb.execution.kernels.KernelPool` (if none
  is ready, on a kernel started for it without warm-up: every run has a kernel that a shutdown can
  interrupt);
- ``--queue DSN``: each accepted run becomes a Procrastinate job in PostgreSQL (:mod:`smartops_nb.jobs`),
  run by ``smartops worker`` processes; any number of ``serve`` replicas share the queue.

The HTTP layer is Starlette on uvicorn (a production ASGI server: a real listen backlog, every
request answered under a burst).

- ``incident_id`` = ``ALERTNAME-FINGERPRINT-STARTSAT`` (one incident per firing episode, see
  :mod:`smartops_nb.alerts.routes`), ``detected_at`` = the alert's ``startsAt``.
- A repeat of an episode already taken in is not run again, whether its run is queued, running or
  finished (claimed in the archive index, :mod:`.intake`; a ``resolved`` confirming run is a
  different kind from the firing run); a route's ``recheck_after`` turns a late repeat into a re-check.
- Queue full, or the queue's PostgreSQL unreachable → 503 (Alertmanager retries); malformed payload
  → 400, one past a limit of :mod:`smartops_nb.alerts.routes` (``MAX_ALERTS``, ``MAX_VALUE_CHARS``...) → 413
  or 422 naming it: all checked before anything is queued, nothing run. Parsing, checking and routing run
  in a worker thread, never on the event loop.
- With a token (``--token`` / ``SMARTOPS_SERVE_TOKEN``) every POST needs ``Authorization: Bearer``;
  without one the server refuses to listen anywhere but loopback. ``GET /healthz`` needs no token
  and tells queue depth, runs in progress, pool size and the process's open descriptors and RSS.
- SIGTERM/SIGINT: stop accepting (503), let the runs in flight finish within the drain timeout,
  interrupt those still running (their records say so), log the queued ones dropped, exit.
- Before any route, :mod:`.security` checks the Host (DNS rebinding) and, on every POST, a browser's
  Origin/Sec-Fetch-Site (no page of another origin posts here), and adds ``nosniff`` and a CSP to
  every answer; ``POST /alerts`` takes ``application/json`` only (415); ``X-Forwarded-*`` count only
  from ``--trusted-proxy`` addresses; the bearer scheme is matched in any case (RFC 9110).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import queue
import signal
import socket
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from smartops_nb.alerts import routes as routes_mod
from smartops_nb.alerts.routes import BadPayload, Routes, parse_payload
from smartops_nb.contract import PUBLIC_URL_ENV, SERVE_TOKEN_ENV as TOKEN_ENV
from smartops_nb.execution.flow import investigate_on_pool
from smartops_nb.execution.kernels import RunHandle
from smartops_nb.execution.prepare import Prepared, prepare
from smartops_nb.params import ParameterError
from smartops_nb.resources import process_stats

from . import security, web
from .intake import answer, claim, episode_index, plan, repeated, settle, status_of
from .security import bearer

if TYPE_CHECKING:
    from smartops_nb.records.archive import Archive

log = logging.getLogger("smartops.serve")

MAX_BODY = 1 << 20  # Alertmanager groups can be large, but not this large (and see routes.MAX_*)
REFUSED = {400: "malformed", 413: "too large", 422: "too deeply nested"}
SHUTDOWN_REASON = "smartops serve shut down before the run finished"


def load_routes(path: str | os.PathLike, files: list[str] = ()) -> Routes:
    """The routes file, with every route's run prepared once: a bad value fails at start, not per alert."""
    routes = routes_mod.load_routes(path, files)
    for route in routes.routes:
        prepare(route.runbook, cli=route.parameters, base=routes.base)  # ParameterError if anything is off
    return routes


# -- in-process mode -----------------------------------------------------------------------------
@dataclass
class Job:
    key: tuple[str, str]          # (incident_id, "firing" | "resolved")
    prep: Prepared
    handle: RunHandle = field(default_factory=RunHandle)  # drain ends the run's kernel through it
    planned: Any = None           # the intake's Planned: its episode claim, released if the run never starts

    @property
    def incident_id(self) -> str:
        return self.key[0]


class Service:
    """In-process mode: bounded queue, worker threads, dedup and kernel pool behind the HTTP layer."""

    def __init__(self, routes: Routes, archive: Archive, *, workers: int = 2, queue_size: int = 10,
                 warm: int | None = None, cell_timeout: int = 600, lease_wait: float = 5.0):
        from smartops_nb.execution.kernels import KernelPool

        self.routes, self.archive = routes, archive
        self.index = episode_index(archive)
        self.workers, self.cell_timeout, self.lease_wait = workers, cell_timeout, lease_wait
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self.pool = KernelPool(workers if warm is None else warm)
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], Job] = {}     # queued or running
        self._running: dict[tuple[str, str], Job] = {}
        self._interrupting = False   # drain's timeout passed: a run that starts now is ended at once
        self.accepting = True
        self.finished = 0
        self._threads = [threading.Thread(target=self._work, name=f"smartops-worker-{i}", daemon=True)
                         for i in range(workers)]

    def start(self) -> "Service":
        self.pool.start()
        for t in self._threads:
            t.start()
        return self

    def describe(self) -> str:
        return f"workers {self.workers}, queue {self.queue.maxsize}, warm kernels {self.pool.size}, archive {self.archive}"

    async def health_async(self) -> tuple[int, dict[str, Any]]:
        return 200, self.health()

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {"status": "ok" if self.accepting else "draining", "queued": self.queue.qsize(),
                    "running": len(self._running), "workers": self.workers, "queue_limit": self.queue.maxsize,
                    "finished": self.finished, "kernel_pool": self.pool.stats()}

    async def handle_async(self, doc: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        # the episode claims (the archive index) and routing 1,000 alerts must not hold the event loop (/healthz)
        return await run_in_threadpool(self.handle, doc)

    def handle(self, doc: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Route and enqueue every alert of one notification; the HTTP status and the answer."""
        out, todo = plan(self.routes, doc)
        for p in todo:
            claim(self.index, p)
            outcome = "deduplicated" if repeated(p) else self._submit(Job(p.key, p.prep, planned=p))
            settle(self.index, p, outcome)
            answer(out, p, outcome)
        return status_of(out)

    def _submit(self, job: Job) -> str:
        with self._lock:
            if not self.accepting:
                return "shutting down"
            if job.key in self._active:
                log.info("dedup: incident %s (%s) is already queued or running; not starting another run",
                         job.incident_id, job.key[1])
                return "deduplicated"
            try:
                self.queue.put_nowait(job)
            except queue.Full:
                log.error("queue full (%d waiting, %d running): alert %s refused with 503",
                          self.queue.qsize(), len(self._running), job.incident_id)
                return "queue full"
            self._active[job.key] = job
        log.info("queued %s for incident %s (%s); %d waiting", job.prep.runbook.id, job.incident_id, job.key[1],
                 self.queue.qsize())
        return "accepted"

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            with self._lock:  # one step: drain sees the job running, or the job sees drain's flag
                self._running[job.key] = job
                interrupting = self._interrupting
            if interrupting:
                job.handle.end(SHUTDOWN_REASON)  # its kernel ends the moment it has one; the record says so
            try:
                investigate_on_pool(job.prep, self.archive, self.pool, incident=job.incident_id, handle=job.handle,
                                    lease_wait=self.lease_wait, cell_timeout=self.cell_timeout)
            finally:
                with self._lock:
                    self._running.pop(job.key, None)
                    self._active.pop(job.key, None)
                    self.finished += 1

    def drain(self, timeout: float) -> None:
        """Stop accepting; finish what is in flight within ``timeout``; interrupt the rest."""
        with self._lock:
            self.accepting = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._active:
                    break
            time.sleep(0.1)
        dropped = []
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                dropped.append(job)
                with self._lock:
                    self._active.pop(job.key, None)
        for job in dropped:
            # its claim is released: Alertmanager's next notification of the still-firing alert runs it
            log.warning("shutdown: run of %s for incident %s was queued and never started (not recorded; "
                        "its episode is released for Alertmanager's next notification)",
                        job.prep.runbook.id, job.incident_id)
            if job.planned is not None:
                settle(self.index, job.planned, "shutting down")
        with self._lock:
            self._interrupting = True
            running = list(self._running.values())
        for job in running:
            log.warning("shutdown: interrupting run of %s for incident %s (drain timeout %.0f s)",
                        job.prep.runbook.id, job.incident_id, timeout)
            job.handle.end(SHUTDOWN_REASON)
        for _ in self._threads:
            self.queue.put(None)
        for t in self._threads:
            t.join(timeout=30)
        self.pool.close()

    async def open_async(self) -> None:
        pass

    async def close_async_http(self) -> None:
        pass  # the drain runs after the HTTP server stops (serve())


# -- HTTP (Starlette on uvicorn) -------------------------------------------------------------------
LISTEN_BACKLOG = 2048   # an alert storm arrives at once: queue the connections, answer every one


def send(status: int, body: Mapping[str, Any]) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="smartops"'} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


async def read_body(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY (a lying or absent Content-Length included)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def healthz(request: Request) -> JSONResponse:
    status, body = await request.app.state.mode.health_async()
    return send(status, {**body, "process": process_stats()})  # descriptors, RSS: flat over months


async def not_found(request: Request) -> JSONResponse:
    return send(404, {"error": "not found; POST alerts to /alerts, GET /healthz"})


async def alerts(request: Request) -> JSONResponse:
    """Alertmanager's webhook: token, Content-Type, size and payload checked before anything is queued."""
    mode, token = request.app.state.mode, request.app.state.token
    client = request.client.host if request.client else "?"
    if token is not None:
        given = bearer(request.headers) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            log.warning("unauthorized POST from %s (%s token)", client, "wrong" if given else "no")
            return send(401, {"error": "missing or wrong bearer token"})
    ctype = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if ctype != "application/json":
        return send(415, {"error": "Content-Type must be application/json (Alertmanager's webhook)"})
    try:
        length = int(request.headers.get("content-length") or 0)
    except ValueError:
        length = -1
    if length < 0 or length > MAX_BODY:
        return send(413 if length > MAX_BODY else 400, {"error": "bad or too large Content-Length"})
    raw = await read_body(request)
    if raw is None:
        return send(413, {"error": "body too large"})
    try:  # parsing and checking a megabyte is CPU: off the event loop, so /healthz still answers
        doc = await run_in_threadpool(parse_payload, raw)
    except BadPayload as e:
        log.warning("refused payload from %s: %s (nothing run)", client, e)
        return send(e.status, {"error": f"{REFUSED[e.status]} Alertmanager payload: {e}"})
    if not mode.accepting:
        return send(503, {"error": "shutting down"})
    status, body = await mode.handle_async(doc)
    return send(status, body)


#: The webhook's routes: ``GET /healthz`` (no token), ``POST`` anything else = Alertmanager's webhook.
WEBHOOK = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/{path:path}", alerts, methods=["POST"]),
    Route("/{path:path}", not_found, methods=["GET"]),
]
#: ``smartops serve``'s table: the pages of :mod:`.web` first, then the webhook's catch-all.
ROUTES = [*web.ROUTES, *WEBHOOK]


@asynccontextmanager
async def lifespan(app):
    await app.state.mode.open_async()
    try:
        yield
    finally:
        await app.state.mode.close_async_http()


def make_app(mode, token: str | None, pages: web.Pages | None = None, *, host: str = "127.0.0.1",
             public_url: str = "") -> Starlette:
    """The ASGI app: :data:`ROUTES` (:data:`WEBHOOK` alone without ``pages``); ``POST`` to the webhook
    takes ``Content-Type: application/json`` only (a browser's ``no-cors`` text/plain post is a 415).

    ``mode``: :class:`Service` (in-process) or :class:`~smartops_nb.server.queue_mode.QueueIntake`;
    both have ``accepting``, ``handle_async(doc)``, ``health_async()``, ``open_async()``/``close_async()``.
    ``pages``: the archive's web view (:class:`.web.Pages`). The handlers find ``mode``, ``token`` and
    ``pages`` on ``app.state``. ``host``, ``public_url``: whom the Host and Origin checks of
    :mod:`.security` let through.
    """
    app = Starlette(routes=ROUTES if pages is not None else WEBHOOK, lifespan=lifespan,
                    middleware=security.middleware(host, public_url))
    app.state.mode, app.state.token, app.state.pages = mode, token, pages
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now (a taken port is an OSError here, before anything starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run_http(mode, sock: socket.socket, token: str | None, drain_timeout: float, pages: web.Pages | None = None, *,
             host: str = "127.0.0.1", public_url: str = "", trusted_proxies: list[str] = ()) -> None:
    """Serve ``mode`` on ``sock`` with uvicorn until SIGTERM/SIGINT (then: stop accepting, close).

    ``X-Forwarded-For``/``-Proto`` are believed only from ``trusted_proxies`` (addresses or networks);
    with none, never: the client is the peer of the connection."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:  # ours: no re-raise of the signal after the drain
            if not self.should_exit:
                log.info("%s received: no new alerts; draining (up to %.0f s)", signal.Signals(sig).name,
                         drain_timeout)
                mode.accepting = False
            elif sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True

    Server(http_config(make_app(mode, token, pages, host=host, public_url=public_url), trusted_proxies)).run(
        sockets=[sock])


def proxied(app, trusted_proxies: list[str] = ()):
    """``app`` behind uvicorn's proxy-headers middleware (``X-Forwarded-For``/``-Proto`` from
    ``trusted_proxies`` only), the connection's own peer kept in ``scope["smartops.peer"]``: the pages
    believe ``X-Forwarded-User`` only when that peer is a trusted proxy (:mod:`.web`)."""
    if not trusted_proxies:
        return app
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    inner = ProxyHeadersMiddleware(app, trusted_hosts=list(trusted_proxies))

    async def keep_peer(scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope["smartops.peer"] = (scope.get("client") or ("", 0))[0]
        await inner(scope, receive, send)
    return keep_peer


def http_config(app, trusted_proxies: list[str] = ()):
    """uvicorn's configuration for ``app``: ``X-Forwarded-*`` used only from ``trusted_proxies``."""
    import uvicorn

    return uvicorn.Config(proxied(app, trusted_proxies), log_config=None, access_log=False, lifespan="on",
                          timeout_keep_alive=5, timeout_graceful_shutdown=10, proxy_headers=False)


def check_listen_address(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        raise ParameterError(f"refusing to listen on {host} without a token (--token or ${TOKEN_ENV}); "
                             "without one only loopback is allowed")


def serve(routes: Routes, archive: Archive, *, host: str = "127.0.0.1", port: int = 9095, token: str | None = None,
          workers: int = 2, queue_size: int = 10, warm: int | None = None, drain_timeout: float = 60,
          cell_timeout: int = 600, queue_dsn: str | None = None, trusted_proxies: list[str] = (),
          policy: Any = None, oidc: Any = None) -> int:
    """Listen until SIGTERM/SIGINT, then drain. Refuses a non-loopback address without a token.

    ``queue_dsn``: queue mode (runs become jobs for ``smartops worker``); else in-process mode.
    ``trusted_proxies``: the only peers whose ``X-Forwarded-*`` headers are used.
    ``policy``: the team's :class:`~smartops_nb.people.policy.Policy` (None: no policy file)."""
    check_listen_address(host, token)
    from smartops_nb.server.sessions import Sessions, install_secret

    public_url, secret = os.environ.get(PUBLIC_URL_ENV, ""), install_secret()  # a bad secret file: exit 2
    if queue_dsn:
        from smartops_nb.server.queue_mode import QueueIntake

        mode = QueueIntake(routes, queue_dsn, archive=archive)  # ParameterError (exit 2) if the queue is unreachable
    else:
        mode = Service(routes, archive, workers=workers, queue_size=queue_size, warm=warm, cell_timeout=cell_timeout)
    sock = listen(host, port)
    if not queue_dsn:
        mode.start()
    log.info("listening on http://%s:%d (routes: %d, %s, %s)", host, sock.getsockname()[1], len(routes.routes),
             mode.describe(), "bearer token required" if token else "no token: loopback only")
    pages = web.Pages(archive, token, files=routes.files, public_url=public_url, queue=queue_dsn,
                      sessions=Sessions(secret, port=sock.getsockname()[1]),
                      **({"policy": policy} if policy is not None else {}), oidc=oidc,
                      trusted_proxies=trusted_proxies)
    try:
        run_http(mode, sock, token, drain_timeout, pages, host=host, public_url=public_url,
                 trusted_proxies=trusted_proxies)
    finally:
        sock.close()
        mode.accepting = False
        if not queue_dsn:
            mode.drain(drain_timeout)
    log.info("stopped (%s)", f"{mode.finished} runs finished" if not queue_dsn else "queue mode: runs stay queued")
    return 0
