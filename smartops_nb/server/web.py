"""The archive in a browser: incidents, one incident's timeline, a record with its charts, and the
plans awaiting approval — served by ``smartops serve`` beside the webhook.

Pages come from Jinja2 templates (``server/templates/``) with autoescaping: everything that comes
from a system under investigation (log lines, label values, key names, query text) is escaped. A
record is rendered by nbconvert with its HTML sanitizer on, served under a Content-Security-Policy
that allows no script at all, inside a sandboxed frame: a hostile log line cannot run in the viewer.

Access: the webhook's token. A browser signs in once with ``?token=…``: a session starts and its
signed id (never the token) goes into a cookie marked HttpOnly and SameSite=Strict whose name carries
the port and the install (:mod:`.sessions`); it lasts 12 hours or until "Sign out". Every page answers
401 without it. Approve and Deny are POST forms carrying a CSRF token keyed by the install's random
secret (and the session), checked besides the Origin (:mod:`.security`), and call the same code as
``smartops approve`` / ``smartops deny``. ``POST /approvals/PLAN_ID`` is the same approval for
automation (bearer token, JSON body ``{"operator": "..."}``); with a queue both hand the claimed plan
to the workers (202, the job's id).

People (:mod:`smartops_nb.people`): a personal token (``smartops token create``; bearer, or ``?token=``
once) names a person, whose role the policy file may raise; every decision then names that identity and
the typed name is ignored. The serve token is the Alertmanager credential: with a policy file it may only
post alerts (pages 403, approvals 403); without one it stays the single shared admin credential, and
the typed name is the decider. Expired/revoked/unknown token: 401; a role that may not: 403
naming the missing permission. The archive is a folder or ``s3://`` + PostgreSQL: records are
read through its storage (S3 objects fetched once to a read-only local copy), plans from its plan
store. Without a token, ``serve`` listens on
loopback only and the pages are open to that machine's users — not to its other origins' pages.

Every URL is in :data:`ROUTES`; its handlers are module functions that find the archive, the access
rules and the sessions in the app's :class:`Pages` (``app.state.pages``).
"""
from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from smartops_nb.contract import ParameterError
from smartops_nb.execution import approve as approvals
from smartops_nb.people import policy as people_policy
from smartops_nb.people.identity import Forbidden, Identity, Unauthorized, alertmanager
from smartops_nb.people.tokens import PREFIX as TOKEN_PREFIX, Tokens
from smartops_nb.jobs.approvals import decide as decide_approval
from smartops_nb.records.entries import IndexMissing, parse_since
from smartops_nb.records.plans import PlanRefused, UnknownPlan
from smartops_nb.records.render import record_html
from smartops_nb.records.storage import file_sha256, is_record_name
from smartops_nb.postincident import checklist
from smartops_nb.reports import incident as incidents

from .security import bearer
from .sessions import Sessions

log = logging.getLogger("smartops.web")

#: Records are notebooks rendered to HTML: images inline, styles inline, no script, no network.
RECORD_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
              "frame-ancestors 'self'; base-uri 'none'; form-action 'none'")
FILTERS = ("runbook", "severity", "environment", "cause", "since", "q")


class Access:
    """Who may see the pages and act: the serve token or a personal token (``?token=`` signs in, or a
    bearer header) or a sign-in session (:mod:`.sessions`); and the CSRF token of the forms, keyed by
    the install's secret."""

    def __init__(self, token: str | None, sessions: Sessions, archive: Any = None,
                 policy: people_policy.Policy = people_policy.NONE, trusted_proxies: Iterable[str] = ()):
        import ipaddress

        self.token, self.sessions, self.archive, self.policy = token, sessions, archive, policy
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]

    def from_proxy(self, request) -> Identity | None:
        """The person a trusted reverse proxy (oauth2-proxy) names in ``X-Forwarded-User``/``-Email``/
        ``-Groups``; None when the connection's peer is not a ``--trusted-proxy`` (the headers are ignored)."""
        import ipaddress

        user = request.headers.get("x-forwarded-user", "").strip()
        peer = request.scope.get("smartops.peer", "")
        try:
            trusted = bool(peer) and any(ipaddress.ip_address(peer) in net for net in self.proxies)
        except ValueError:
            trusted = False
        if not user or not trusted:
            return None
        groups = tuple(g.strip() for g in request.headers.get("x-forwarded-groups", "").split(",") if g.strip())
        email = request.headers.get("x-forwarded-email", "").strip()
        return Identity(subject=user[:256], issuer="proxy", name=(email or user)[:128], how="proxy",
                        groups=groups[:200])

    def identify(self, request, *, cookie: bool = True, query: bool = True) -> Identity | None:
        """Who makes this request, with the policy's role. None: nobody in particular (loopback without
        a token, or the shared serve token without a policy): the typed name decides.
        :class:`Unauthorized` when nothing valid is presented and something is needed."""
        if cookie and self.session(request) is not None:
            return self._resolved(self.sessions.who(request.cookies.get(self.sessions.cookie)))
        proxied = self.from_proxy(request)
        if proxied is not None:
            return self._resolved(proxied)
        for given in (bearer(request.headers), request.query_params.get("token") if query else None):
            if not given:
                continue
            if self.token_ok(given):
                return self._resolved(alertmanager()) if self.policy.configured else None
            if given.startswith(TOKEN_PREFIX) and self.archive is not None:
                return self._resolved(Tokens(self.archive).identity(given))
            raise Unauthorized("missing or unknown token")
        if self.token is None and not self.policy.configured:
            return None
        raise Unauthorized("sign in: a personal token (Authorization: Bearer, or ?token= once) or the serve token")

    def _resolved(self, who: Identity | None) -> Identity | None:
        return None if who is None else self.policy.resolve(who)

    def session(self, request) -> str | None:
        return self.sessions.check(request.cookies.get(self.sessions.cookie))

    def token_ok(self, given: str | None) -> bool:
        return bool(given) and self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def csrf(self, request) -> str:
        """The token every state-changing form carries: an attacker's page can neither read nor compute it."""
        return self.sessions.mac("csrf", self.session(request) or "")

    def csrf_ok(self, request, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf(request).encode())


def _templates():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("smartops_nb.server", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["urlq"] = lambda s: quote(str(s), safe="")
    return env


def incident_path(incident_id: str) -> str:
    return f"/incidents/{quote(incident_id, safe='')}"


def record_path(name: str) -> str:
    return f"/records/{quote(name, safe='')}"


class Pages:
    """What the pages serve and who may see them: one per app, kept on ``app.state.pages`` where every
    handler of :data:`ROUTES` finds it.

    ``archive``: a folder or a shared archive (``s3://`` + PostgreSQL), read through its storage;
    ``queue``: approvals are handed to its workers (``smartops approve --queue``) instead of run here;
    ``public_url``: the address the identity provider sends a browser back to (else the request's own)."""

    def __init__(self, archive: Any, token: str | None, *, files: Iterable[str] = (), public_url: str = "",
                 queue: str | None = None, sessions: Sessions | None = None,
                 policy: people_policy.Policy = people_policy.NONE, oidc: Any = None,
                 trusted_proxies: Iterable[str] = ()):
        self.archive, self.files, self.public_url, self.queue = archive, list(files), public_url, queue
        self.policy, self.oidc = policy, oidc
        self.sessions = Sessions.for_install() if sessions is None else sessions
        self.access = Access(token, self.sessions, archive, policy, trusted_proxies)
        self.env = _templates()


def _pages(request: Request) -> Pages:
    return request.app.state.pages


def html(request: Request, template: str, status: int = 200, **ctx) -> HTMLResponse:
    """A page (security headers: :class:`.security.Guard`)."""
    pages = _pages(request)
    who = getattr(request.state, "who", None)
    body = pages.env.get_template(template).render(csrf=pages.access.csrf(request), who=who,
                                                   signed_in=pages.access.session(request) is not None, **ctx)
    return HTMLResponse(body, status_code=status)


def refused_form(request: Request) -> HTMLResponse:
    """The answer to a form whose CSRF token is wrong: 403, nothing done."""
    return html(request, "error.html", 403, title="Refused",
                message="This form is stale or was not sent by this page (CSRF check): nothing was done.")


def guarded(handler):
    """``handler`` behind the pages' access: signed in (or signing in with ``?token=``), allowed to view;
    what it raises for a refusal or a missing thing becomes a 403 or 404 page."""
    async def endpoint(request: Request):
        pages = _pages(request)
        access, sessions = pages.access, pages.sessions
        try:
            who = await run_in_threadpool(access.identify, request)
            if who is not None:
                who.require("view")
        except Unauthorized as e:
            if pages.oidc is not None and request.method == "GET":  # the team's identity provider signs people in
                return RedirectResponse(f"/signin?{urlencode({'next': request.url.path})}", status_code=303)
            return html(request, "error.html", 401, title="Sign in", message=f"{e}. Open the link from the "
                        "alert, or add ?token=… once (the serve token, or your personal token).")
        except Forbidden as e:
            return html(request, "error.html", 403, title="Refused", message=str(e))
        request.state.who = who
        if request.method == "GET" and request.query_params.get("token") and access.session(request) is None:
            # signed in with ?token=: a session in a cookie (never the token), the token off the address bar
            rest = {k: v for k, v in request.query_params.items() if k != "token"}
            to = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            out = RedirectResponse(to, status_code=303)
            out.set_cookie(sessions.cookie, sessions.start(who), max_age=int(sessions.ttl), httponly=True,
                           samesite="strict", secure=request.url.scheme == "https", path="/")
            return out
        try:
            return await handler(request)
        except Forbidden as e:
            log.warning("%s %s refused: %s", request.method, request.url.path, e)
            return html(request, "error.html", 403, title="Refused", message=f"{e}: nothing was done.")
        except (IndexMissing, incidents.IncidentNotFound, FileNotFoundError, PlanRefused) as e:
            return html(request, "error.html", 404, title="Not found", message=str(e))
    return endpoint


# -- the handlers (each finds the archive and the access rules in _pages(request)) ---------------
async def home(request: Request):
    return RedirectResponse("/incidents", status_code=303)


async def incidents_page(request: Request):
    filters = {k: request.query_params.get(k, "").strip() for k in FILTERS}
    try:
        rows = await run_in_threadpool(_incident_rows, _pages(request).archive, filters)
    except ValueError as e:  # a bad `since` or search text: say so, as the CLI does
        return html(request, "error.html", 400, title="Bad filter", message=str(e))
    return html(request, "incidents.html", incidents=rows, filters=filters, title="Incidents")


async def incident_page(request: Request):
    incident_id = request.path_params["incident_id"]
    inc = await run_in_threadpool(incidents.show, _pages(request).archive, incident_id)
    return html(request, "incident.html", inc=inc, title=f"Incident {incident_id}",
                message=request.query_params.get("m"), events=_events(inc), record_path=record_path)


async def record_page(request: Request):
    name = request.path_params["name"]
    info = await run_in_threadpool(_record_info, _pages(request).archive, name)
    return html(request, "record.html", title=name, **info, incident_path=incident_path)


async def record_view(request: Request):
    path = await run_in_threadpool(_record_file, _pages(request).archive, request.path_params["name"])
    body = await run_in_threadpool(record_html, path)
    return HTMLResponse(body, headers={"Content-Security-Policy": RECORD_CSP})


async def record_download(request: Request):
    path = await run_in_threadpool(_record_file, _pages(request).archive, request.path_params["name"])
    return Response(path.read_bytes(), media_type="application/x-ipynb+json",
                    headers={"Content-Disposition": f'attachment; filename="{path.name}"'})


async def postmortem_draft(request: Request):
    text = await run_in_threadpool(_postmortem, _pages(request).archive, request.path_params["incident_id"])
    return Response(text, media_type="text/markdown; charset=utf-8")


#: What a plan's form may ask (``POST /plans/{id}/{verb}``); any other verb is a 404 and does nothing.
DECISIONS = ("approve", "deny")


async def decide(request: Request):
    pages = _pages(request)
    archive, files, queue, policy = pages.archive, pages.files, pages.queue, pages.policy
    plan_id, verb = request.path_params["plan_id"], request.path_params["verb"]
    if verb not in DECISIONS:
        return html(request, "error.html", 404, title="Not found", message="a plan is approved or denied")
    form = await request.form()
    if not pages.access.csrf_ok(request, str(form.get("csrf", ""))):
        log.warning("plan %s: %s refused, bad CSRF token", plan_id, verb)
        return refused_form(request)
    plan = await run_in_threadpool(lambda: archive.plan_store().get(plan_id))
    operator = request.state.who or str(form.get("operator", "")).strip()  # the typed name: no identity
    if verb == "approve":
        if str(form.get("confirm", "")).strip() not in (plan.target, plan.id):
            said = f"not approved: type the target ({plan.target}) or the plan id to confirm"
        else:
            said = await run_in_threadpool(_approve, plan_id, operator, archive, files, queue, policy)
    else:
        said = await run_in_threadpool(_deny, plan_id, operator, str(form.get("reason", "")), archive, files,
                                       policy)
    return RedirectResponse(f"{incident_path(plan.incident_id)}?{urlencode({'m': said})}", status_code=303)


async def learn(request: Request):
    pages = _pages(request)
    form = await request.form()
    incident_id = request.path_params["incident_id"]
    if not pages.access.csrf_ok(request, str(form.get("csrf", ""))):
        return refused_form(request)
    who = request.state.who
    if who is not None:  # a lesson is a comment: a responder's (Forbidden: 403, nothing kept)
        who = pages.policy.require(who, "comment")
    by = who.decider if who is not None else str(form.get("operator", "")).strip()  # the typed name: no identity
    try:
        lesson = await run_in_threadpool(checklist.learn, pages.archive, incident_id, str(form.get("text", "")), by)
        said = f"lesson {lesson['id']} kept for runbook {lesson['runbook']}"
    except ParameterError as e:
        said = f"not kept: {e}"
    return RedirectResponse(f"{incident_path(incident_id)}?{urlencode({'m': said})}", status_code=303)


async def approval_api(request: Request):
    pages = _pages(request)
    access, archive, files, queue, policy = pages.access, pages.archive, pages.files, pages.queue, pages.policy
    try:
        # automation presents a bearer token; a browser's cookie alone does not approve (CSRF)
        who = await run_in_threadpool(lambda: access.identify(request, cookie=False, query=False))
    except Unauthorized as e:
        return JSONResponse({"error": str(e)}, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="smartops"'})
    try:
        body = json.loads(await request.body() or b"{}")
        operator = who or (str(body.get("operator", "")) if isinstance(body, dict) else "")
    except ValueError:
        return JSONResponse({"error": "body must be JSON: {\"operator\": NAME}"}, status_code=400)
    plan_id = request.path_params["plan_id"]
    try:
        out = await run_in_threadpool(lambda: decide_approval(plan_id, operator, archive, queue=queue, files=files,
                                                              policy=policy))
    except Forbidden as e:
        return JSONResponse({"plan": plan_id, "status": "forbidden", "error": str(e)}, status_code=403)
    except ParameterError as e:
        return JSONResponse({"error": str(e)}, status_code=400)
    except PlanRefused as e:
        return JSONResponse({"plan": plan_id, "status": "refused", "reason": str(e)},
                            status_code=404 if isinstance(e, UnknownPlan) else 409)
    said = {"job": out.job_id} if out.job_id is not None else {"record": out.result.name if out.result else None}
    return JSONResponse({"plan": plan_id, "status": out.status, "reason": out.reason, **said},
                        status_code={"executed": 200, "pending": 202, "queued": 202}.get(out.status, 409))


def callback_url(request: Request) -> str:
    """Where the identity provider sends the browser back: under ``--public-url`` when serve has one,
    else under the address this request came to."""
    base = _pages(request).public_url or str(request.base_url)
    return f"{base.rstrip('/')}/signin/callback"


def no_provider(request: Request) -> HTMLResponse:
    return html(request, "error.html", 404, title="Not found", message="no identity provider configured")


def provider_down(request: Request, e: Exception) -> HTMLResponse:
    return html(request, "error.html", 503, title="Sign-in unavailable",
                message=f"{e}. Alerts are still received; try again later.")


async def sign_in(request: Request):
    from .oidc import ProviderUnavailable

    oidc = _pages(request).oidc
    if oidc is None:
        return no_provider(request)
    nxt = request.query_params.get("next", "/incidents")
    nxt = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/incidents"
    try:
        return RedirectResponse(await run_in_threadpool(oidc.begin, callback_url(request), nxt), status_code=303)
    except ProviderUnavailable as e:
        return provider_down(request, e)


async def sign_in_done(request: Request):
    from .oidc import ProviderUnavailable

    pages = _pages(request)
    oidc, sessions = pages.oidc, pages.sessions
    if oidc is None:
        return no_provider(request)
    q = request.query_params
    try:
        who, nxt = await run_in_threadpool(oidc.finish, q.get("state", ""), q.get("code", ""), callback_url(request))
    except ProviderUnavailable as e:
        return provider_down(request, e)
    except Unauthorized as e:
        log.warning("sign-in refused: %s", e)
        return html(request, "error.html", 401, title="Sign-in refused", message=str(e))
    log.info("signed in: %s", who.label)
    out = RedirectResponse(nxt, status_code=303)
    out.set_cookie(sessions.cookie, sessions.start(who), max_age=int(sessions.ttl), httponly=True,
                   samesite="lax", secure=request.url.scheme == "https", path="/")
    return out


async def sign_out(request: Request):
    pages = _pages(request)
    sessions = pages.sessions
    form = await request.form()
    if not pages.access.csrf_ok(request, str(form.get("csrf", ""))):
        return html(request, "error.html", 403, title="Refused", message="This form is stale or was not sent "
                                                                          "by this page (CSRF check).")
    sessions.end(request.cookies.get(sessions.cookie))
    out = RedirectResponse("/incidents", status_code=303)
    out.delete_cookie(sessions.cookie, path="/", httponly=True, samesite="strict")
    return out


#: The pages and the approval endpoint. An app serving them keeps its :class:`Pages` on ``app.state.pages``.
ROUTES = [
    Route("/", guarded(home), methods=["GET"]),
    Route("/incidents", guarded(incidents_page), methods=["GET"]),
    Route("/incidents/{incident_id}", guarded(incident_page), methods=["GET"]),
    Route("/incidents/{incident_id}/postmortem", guarded(postmortem_draft), methods=["GET"]),
    Route("/records/{name}", guarded(record_page), methods=["GET"]),
    Route("/records/{name}/view", guarded(record_view), methods=["GET"]),
    Route("/records/{name}/download", guarded(record_download), methods=["GET"]),
    Route("/plans/{plan_id}/{verb:str}", guarded(decide), methods=["POST"]),  # DECISIONS, else 404
    Route("/incidents/{incident_id}/lessons", guarded(learn), methods=["POST"]),
    Route("/approvals/{plan_id}", approval_api, methods=["POST"]),
    Route("/signout", sign_out, methods=["POST"]),
    Route("/signin", sign_in, methods=["GET"]),
    Route("/signin/callback", sign_in_done, methods=["GET"]),
]


# -- what the pages show ------------------------------------------------------------------------
def _incident_rows(archive: Any, filters: dict[str, str], limit: int = 50) -> list[dict[str, Any]]:
    """Incidents newest first (of the records matching the filters), each with its status."""
    wanted = {k: v for k, v in filters.items() if v and k != "q"}
    if filters.get("since"):
        wanted["since"] = parse_since(filters["since"])
    rows = (archive.search(filters["q"], limit=500, **wanted) if filters.get("q")
            else archive.list(limit=500, **wanted))
    out, seen = [], set()
    for row in sorted(rows, key=lambda r: r["started_at"], reverse=True):
        incident_id = row["incident_id"]
        if not incident_id or incident_id in seen:
            continue
        seen.add(incident_id)
        inc = incidents.show(archive, incident_id, detail=False)
        causes = sorted({c for e in inc["records"] for c in e["diagnosis"].get("causes") or []})
        out.append({**{k: inc[k] for k in ("incident_id", "runbook", "severity", "environment", "detected_at",
                                            "status", "pending_plans")},
                    "causes": causes, "response": inc["response"], "records": len(inc["records"])})
        if len(out) >= limit:
            break
    return out


def _events(inc: dict[str, Any]) -> list[dict[str, Any]]:
    """The incident's timeline: records, their actions, and the plans with their fate, in time order."""
    events = []
    for e in inc["records"]:
        events.append({"at": e["started_at"], "kind": "record", "entry": e})
        for a in e["actions"]:
            events.append({"at": a["at"], "kind": "action", "entry": a, "record": e["record"]})
    for p in inc["plans"]:
        events.append({"at": p["created_at"], "kind": "plan", "entry": p})
    return sorted(events, key=lambda x: str(x["at"]))


def _record_file(archive: Any, name: str) -> Path:
    """A record of this archive by its exact name (a local copy for S3): never a path, never a prefix."""
    if not is_record_name(name) or "/" in name or "\\" in name:
        raise FileNotFoundError(f"no record {name!r}")
    try:
        path = archive.fetch(name, fresh=True)
    except (OSError, LookupError):
        raise FileNotFoundError(f"no record {name!r} in {archive}") from None
    if not path.is_file():
        raise FileNotFoundError(f"no record {name!r} in {archive}")
    return path


def _record_info(archive: Any, name: str) -> dict[str, Any]:
    path = _record_file(archive, name)
    summary = json.loads(path.read_text()).get("metadata", {}).get("smartops", {})
    sha = file_sha256(path)
    entry = archive.entry(path.name)
    verified = entry is not None and entry.get("sha256") == sha
    return {"name": path.name, "summary": summary, "sha256": sha, "entry": entry, "verified": verified}


def _postmortem(archive: Any, incident_id: str) -> str:
    from smartops_nb.reports import postmortem

    names = [n for n, _ in incidents.summaries(archive, incident_id)]
    records = postmortem.one_incident([postmortem.load(archive.fetch(n)) for n in names])
    plans = [p.to_dict() for p in archive.plan_store().of_incident(incident_id)]
    done, lessons = checklist.proof(archive, incident_id)
    return postmortem.render(records, [], None, plans, done, lessons)


def _approve(plan_id: str, operator: "str | Identity", archive: Any, files: list[str], queue: str | None,
             policy: people_policy.Policy = people_policy.NONE) -> str:
    try:
        out = decide_approval(plan_id, operator, archive, queue=queue, files=files, policy=policy)
    except (PlanRefused, ParameterError) as e:
        return f"refused: {e}"
    if out.job_id is not None:
        return (f"plan {plan_id} approved by {out.plan.decided_by}: queued as job {out.job_id}; a worker "
                f"carries it out (reload this page for its outcome)")
    return f"plan {plan_id} {out.status}: {out.reason}"


def _deny(plan_id: str, operator: "str | Identity", reason: str, archive: Any, files: list[str],
          policy: people_policy.Policy = people_policy.NONE) -> str:
    try:
        plan = approvals.deny(plan_id, operator, reason, archive, files=files, policy=policy)
    except (PlanRefused, ParameterError) as e:
        return f"refused: {e}"
    return f"plan {plan.id} denied by {plan.decided_by}: {plan.reason}"

