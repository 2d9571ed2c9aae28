"""``smartops serve``: the Alertmanager webhook receiver (see :mod:`smartops_nb.server.serve`)."""
from __future__ import annotations

import argparse
import os
import sys

from smartops_nb.contract import PUBLIC_URL_ENV, QUEUE_ENV, SERVE_TOKEN_ENV, TRUSTED_PROXIES_ENV
from smartops_nb.params import ParameterError

DEFAULT_ROUTES = "parameters/routes.yaml"


def register(subparsers, parser_class) -> None:
    s = subparsers.add_parser(
        "serve", help="receive Alertmanager webhooks and run the routed runbooks",
        description="Receive Alertmanager's webhook (payload version 4) on POST /alerts, run the runbook each "
                    "alert routes to (routes file) in the background on warm kernels, and write the records "
                    "to the archive. With --queue DSN (or $SMARTOPS_QUEUE) each run becomes a job in a PostgreSQL "
                    "queue instead, run by `smartops worker` processes; any number of serve replicas may share it. "
                    "GET /healthz reports queue and workers. SIGTERM/SIGINT drain and exit. Browser pages of other "
                    "origins cannot post here (Origin/Sec-Fetch-Site), a foreign Host gets 421, and the pages' "
                    "sign-in is a 12-hour session (README: security in each mode). "
                    "Exit 2: bad routes/parameters, an unreachable queue, or a non-loopback address without a token.")
    s.add_argument("--routes", default=DEFAULT_ROUTES, metavar="FILE",
                   help=f"routes file mapping alerts to runbooks ({DEFAULT_ROUTES})")
    s.add_argument("-f", "--parameters-file", action="append", default=[], metavar="FILE",
                   help="base YAML parameters file(s) for every run, as for `smartops run` (notify: too)")
    from smartops_nb.cli.archive import add_location

    add_location(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1; others need a token)")
    s.add_argument("--port", type=_port, default=9095, help="port (9095; 0: any free one)")
    s.add_argument("--token", help="bearer token POSTs must carry (default $SMARTOPS_SERVE_TOKEN)")
    s.add_argument("--public-url", metavar="URL",
                   help="where people reach these pages (default $SMARTOPS_PUBLIC_URL): notifications link the "
                        "incident's and the record's page")
    s.add_argument("--trusted-proxy", action="append", default=None, metavar="ADDR",
                   help="a reverse proxy's address or network (repeatable; default $SMARTOPS_TRUSTED_PROXIES, "
                        "comma-separated): only from these are X-Forwarded-For/-Proto believed; none: never")
    s.add_argument("--policy", metavar="FILE",
                   help="the team's policy file: roles and who may approve what (default $SMARTOPS_POLICY, else "
                        "parameters/policy.yaml if present); with one, the serve token may only post alerts")
    s.add_argument("--oidc-issuer", metavar="URL", help="sign people in to the pages with this OpenID Connect "
                                                         "provider (discovery from URL/.well-known/openid-configuration)")
    s.add_argument("--oidc-client-id", default=os.environ.get("SMARTOPS_OIDC_CLIENT_ID"), metavar="ID",
                   help="the client id registered with the provider (default $SMARTOPS_OIDC_CLIENT_ID)")
    s.add_argument("--oidc-client-secret", default=os.environ.get("SMARTOPS_OIDC_CLIENT_SECRET"), metavar="SECRET",
                   help="its secret (default $SMARTOPS_OIDC_CLIENT_SECRET; prefer the variable)")
    s.add_argument("--oidc-groups-claim", default="groups", metavar="CLAIM", help="the ID token claim with the "
                                                                                   "person's groups (groups)")
    s.add_argument("--workers", type=int, default=2, help="runs at the same time (2)")
    s.add_argument("--queue", type=_queue, default=None, metavar="DSN",
                   help="PostgreSQL DSN of the job queue: queue mode (default $SMARTOPS_QUEUE; none: in-process). "
                        "A number here is the older spelling of --queue-size")
    s.add_argument("--queue-size", type=int, default=None, metavar="N",
                   help="in-process mode: runs waiting at most; more get 503 (10)")
    s.add_argument("--warm", type=int, default=None, metavar="N",
                   help="warm kernels kept ready (default: one per worker; 0: cold runs)")
    s.add_argument("--drain-timeout", type=float, default=60, metavar="S",
                   help="on SIGTERM, seconds to let running runs finish before interrupting them (60)")
    s.add_argument("--cell-timeout", type=int, default=600, metavar="S", help="seconds one cell may run (600)")
    s.set_defaults(func=cmd_serve)


def _port(text: str) -> int:
    """A TCP port number (argparse: anything else is a usage error, exit 2)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {port}")
    return port


def _queue(text: str) -> int | str:
    """``--queue``: a DSN (queue mode), or a number (in-process queue size)."""
    return int(text) if text.isdigit() else text


def cmd_serve(args) -> int:
    from smartops_nb.records.archive import open_archive
    from smartops_nb.server import security, serve

    token = args.token or os.environ.get(SERVE_TOKEN_ENV) or None
    if args.public_url:  # read where links are made: the web view and the notifications of every run
        os.environ[PUBLIC_URL_ENV] = args.public_url
    size = args.queue_size if args.queue_size is not None else args.queue if isinstance(args.queue, int) else 10
    dsn = args.queue if isinstance(args.queue, str) else None if isinstance(args.queue, int) else \
        os.environ.get(QUEUE_ENV) or None
    try:
        proxies = security.trusted_proxies(args.trusted_proxy if args.trusted_proxy is not None
                                           else [os.environ.get(TRUSTED_PROXIES_ENV, "")])
        if args.workers < 1 or size < 1:
            raise ParameterError("--workers and --queue-size must be at least 1")
        routes = serve.load_routes(args.routes, args.parameters_file)  # notify: too (runner.prepare checks it)
        from smartops_nb.people import policy as people_policy

        policy = people_policy.load(args.policy)  # a file that does not parse: exit 2 at start, naming the line
        oidc = None
        if args.oidc_issuer:
            from smartops_nb.server.oidc import Provider

            if not args.oidc_client_id:
                raise ParameterError("--oidc-issuer needs --oidc-client-id (or $SMARTOPS_OIDC_CLIENT_ID)")
            oidc = Provider(args.oidc_issuer, args.oidc_client_id, args.oidc_client_secret or "",
                            groups_claim=args.oidc_groups_claim)
        archive = open_archive(args.archive, args.index)
        return serve.serve(routes, archive, host=args.host, port=args.port, token=token,
                           workers=args.workers, queue_size=size, warm=args.warm, drain_timeout=args.drain_timeout,
                           cell_timeout=args.cell_timeout, queue_dsn=dsn, trusted_proxies=proxies,
                           policy=policy, oidc=oidc)
    except ParameterError as e:
        print(f"smartops serve: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the port is taken, the address is not ours...
        print(f"smartops serve: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
