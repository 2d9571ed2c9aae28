"""``smartops token create|list|revoke``: personal tokens for the CLI and automation.

A token is printed once by ``create`` and kept only as a SHA-256 hash in the archive's index (so a
team with a PostgreSQL index shares them). Creating and revoking needs the ``admin`` role: the caller
is ``$SMARTOPS_TOKEN``'s user if set, else the OS user (whom the policy file must make admin when there
is one). Exit 2: bad input (unknown role, bad duration, unknown token id) or a caller who may not.
"""
from __future__ import annotations

import json
import sys

from smartops_nb.contract import EXIT_BAD_INPUT, EXIT_OK

from .approve import add_policy, archive_of, operator_of, policy_of
from .archive import add_location


def register(subparsers, parser_class) -> None:
    t = subparsers.add_parser("token", help="personal tokens: create, list, revoke",
                              description="Personal tokens identify a person to `smartops approve/deny` "
                                          "($SMARTOPS_TOKEN) and to `smartops serve` (Authorization: Bearer).")
    sub = t.add_subparsers(dest="token_command", required=True, parser_class=parser_class)
    x = sub.add_parser("create", help="a new token, printed once")
    x.add_argument("--user", required=True, metavar="NAME", help="whom the token names")
    x.add_argument("--role", required=True, choices=["viewer", "responder", "approver", "admin"])
    x.add_argument("--expires", default="90d", metavar="DURATION", help="90d (default), 12h, 2w, or never")
    x.set_defaults(func=cmd_create)
    y = sub.add_parser("list", help="every token (never the token or its hash) with its state")
    y.add_argument("--json", action="store_true", help="machine-readable output")
    y.set_defaults(func=cmd_list)
    z = sub.add_parser("revoke", help="a token stops working at once")
    z.add_argument("token_id", metavar="TOKEN_ID", help="the token's id (tk-...)")
    z.set_defaults(func=cmd_revoke)
    for p in (x, y, z):
        add_location(p)
        add_policy(p)


def _tokens(args, permission: str):
    """The token table, once the caller holds ``permission``; ParameterError/Unauthorized/Forbidden else."""
    from smartops_nb.people.tokens import Tokens

    archive = archive_of(args)
    who = policy_of(args).require(_as_identity(operator_of(args, archive)), permission)
    return Tokens(archive), who


def _as_identity(operator):
    from smartops_nb.people import identity

    return identity.of(operator)


def _run(command: str, call) -> int:
    from smartops_nb.contract import ParameterError
    from smartops_nb.people.identity import Forbidden, Unauthorized

    try:
        return call()
    except (ParameterError, Unauthorized, Forbidden) as e:
        print(f"smartops token {command}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def cmd_create(args) -> int:
    def go() -> int:
        tokens, who = _tokens(args, "tokens")
        token, row = tokens.create(args.user, args.role, args.expires, by=who.name)
        print(f"token {row['id']} for {row['user_name']} ({row['role']}), expires {row['expires_at'] or 'never'}; "
              "shown once, keep it secret:", file=sys.stderr)
        print(token)
        return EXIT_OK
    return _run("create", go)


def cmd_list(args) -> int:
    def go() -> int:
        rows = _tokens(args, "view")[0].list()
        if args.json:
            print(json.dumps(rows, indent=2))
        for r in [] if args.json else rows:
            print(f"{r['id']}  {r['user_name']:<16} {r['role']:<10} {r['state']:<8} created {r['created_at']}"
                  f" by {r['created_by'] or '?'}, expires {r['expires_at'] or 'never'}")
        return EXIT_OK
    return _run("list", go)


def cmd_revoke(args) -> int:
    def go() -> int:
        row = _tokens(args, "tokens")[0].revoke(args.token_id)
        print(f"token {row['id']} of {row['user_name']} revoked at {row['revoked_at']}")
        return EXIT_OK
    return _run("revoke", go)
