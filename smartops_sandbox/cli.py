"""`smartops sandbox up | status | fault NAME | heal | down`: the sandbox from the command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .manager import DEFAULT_PORTS, Sandbox, default_state_dir, STATE_FILE

ENGINE_MARKER = b"podman"   # in the podman API service's /proc/PID/cmdline (see _pid_is)


def _sandbox(args) -> Sandbox:
    d = Path(args.dir) if getattr(args, "dir", None) else default_state_dir()
    from .manager import default_ports

    p = default_ports()
    p.update({k: getattr(args, f"{k}_port") for k in list(p) if getattr(args, f"{k}_port", None)})  # up's flags
    wanted = ("compose" if getattr(args, "compose", False) else
              "containers" if getattr(args, "containers", False) else "process")
    if (d / STATE_FILE).exists():
        recorded = json.loads((d / STATE_FILE).read_text()).get("mode") or "process"
        if getattr(args, "sandbox_command", None) != "up":
            return _load(d)
        if recorded == wanted:
            if wanted != "process":
                _engine(d)    # `down` stopped it
            return _load(d)
        if _any_running(d):
            raise SystemExit(f"smartops sandbox: the sandbox in {d} runs in {recorded} mode; "
                             f"`smartops sandbox down` first")
    if wanted == "containers":
        return _container_sandbox(d, p)
    if wanted == "compose":
        return _compose_sandbox(d, p)
    return Sandbox(d, p["api"], p["postgres"], p["redis"])


def _any_running(d: Path) -> bool:
    """Whether any service of the sandbox recorded in ``d`` still runs (an unreachable engine: no)."""
    try:
        return any(c.get("running") for c in _load(d).status().values())
    except Exception:
        return False


def _load(d: Path) -> Sandbox:
    """The sandbox recorded in ``d``: host processes, or containers on the sandbox's own engine."""
    mode = json.loads((d / STATE_FILE).read_text()).get("mode")
    if mode == "containers":
        from .containers import ContainerSandbox

        return ContainerSandbox.load(d)
    if mode == "compose":
        from .compose import ComposeSandbox

        return ComposeSandbox.load(d)
    return Sandbox.load(d)


def _container_sandbox(d: Path, ports: dict) -> Sandbox:
    """Container mode: a podman API service of the sandbox's own (private storage) runs the three
    containers; its pid is kept in ``podman/podman-service.pid`` so ``down`` can stop it."""
    from .containers import ContainerSandbox

    return ContainerSandbox(_engine(d), d, ports["api"], ports["postgres"], ports["redis"])


def _compose_sandbox(d: Path, ports: dict) -> Sandbox:
    """Compose mode: the same engine, and ``docker-compose`` creating the containers as project
    ``smartamazon`` from ``deploy/compose/docker-compose.yml``."""
    from .compose import CLI, ComposeSandbox, compose_cli

    if compose_cli() is None:
        raise SystemExit(f"smartops sandbox: --compose needs {CLI} (apt-get install docker-compose)")
    return ComposeSandbox(_engine(d), d, ports["api"], ports["postgres"], ports["redis"])


def _engine(d: Path) -> str:
    """The URL of the sandbox's podman API service, started (detached) unless it already runs."""
    from .podman import PodmanService

    service = PodmanService(d / "podman")
    if _engine_pid(service) and service.socket_path.exists():
        return service.url
    url = service.start(timeout=60)
    service._proc = None  # detached: it outlives this command, and `down` stops it by pid
    return url


def _engine_pid(service) -> int | None:
    """The pid in the service's pid file if that process still is a podman (not a reused pid)."""
    from .postgres_server import _pid_is

    try:
        pid = int(service.pid_path.read_text())
    except (OSError, ValueError):
        return None
    return pid if _pid_is(pid, ENGINE_MARKER) else None


def _stop_engine(d: Path) -> None:
    import os
    import signal

    from .podman import PodmanService
    from .postgres_server import _wait_gone

    service = PodmanService(d / "podman")
    if service.pid_path.exists():
        pid = _engine_pid(service)
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
                _wait_gone(pid, 10)
            except ProcessLookupError:
                pass
        service.pid_path.unlink()
        service._unmount_leftovers()   # the storage's overlay bind mount, the runtime folder


def _print_status(status: dict) -> None:
    for name, c in status.items():
        where = c.get("url") or c.get("dsn") or ""
        state = "running" if c.get("running") else "stopped"
        extra = ""
        if name == "api" and isinstance(c.get("health"), (list, tuple)):
            extra = f" health={c['health'][0]} {json.dumps(c['health'][1])}"
        print(f"{name:<9} {state:<8} pid={c.get('pid')} {where}{extra}")


def _failed(sb: Sandbox, e: Exception) -> int:
    """One line, no traceback, for a fault/heal that could not be done (API down, a refusal)."""
    import urllib.error

    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        print(f"smartops sandbox: cannot reach the sandbox API at {sb.api_url}: {e.reason}", file=sys.stderr)
    else:
        print(f"smartops sandbox: {e}", file=sys.stderr)
    return 1


def main(args) -> int:
    cmd = args.sandbox_command
    if cmd == "fault" and (args.list or not args.name):
        from .manager import fault_descriptions

        for name, description in sorted(fault_descriptions().items()):
            print(f"{name:<18} {description}")
        return 0 if args.list else 2
    sb = _sandbox(args)
    if cmd == "up":
        print(f"starting the SmartAmazon sandbox in {sb.state_dir} ...", file=sys.stderr)
        try:
            status = sb.up()
        except (OSError, RuntimeError) as e:  # a port taken, PostgreSQL that would not start: what it said
            return _failed(sb, e)
        _print_status(status)
        log = {} if sb.state().get("mode") in ("containers", "compose") else {"api_log_path": str(sb.api_log)}
        print(f"parameters: {json.dumps({**sb.params(), **log})}")
        return 0
    if not (sb.state_dir / STATE_FILE).exists():
        print(f"smartops sandbox: no sandbox in {sb.state_dir} (run `smartops sandbox up`)", file=sys.stderr)
        return 2 if cmd != "down" else 0
    if cmd == "status":
        status = sb.status()
        _print_status(status)
        return 0 if all(c.get("running") for c in status.values()) else 1
    if cmd == "fault":
        try:
            result = sb.fault(args.name)
        except ValueError as e:
            print(f"smartops sandbox: {e}", file=sys.stderr)
            return 2
        except (OSError, RuntimeError) as e:   # API down, or the fault refused (e.g. a mount)
            return _failed(sb, e)
        print(f"fault {args.name} injected: {json.dumps(result.get('result', result), default=str)}")
        return 0
    if cmd == "heal":
        try:
            healed = sb.heal()
        except (OSError, RuntimeError) as e:
            return _failed(sb, e)
        print(f"healed: {json.dumps(healed, default=str)}")
        return 0
    if cmd == "down":
        sb.down()
        _stop_engine(sb.state_dir)
        print("sandbox stopped")
        return 0
    return 2


def _port(text: str) -> int:
    import argparse

    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return int(text)


def register(sub, parser_class) -> None:
    """Add ``smartops sandbox ...`` to the ``smartops`` command (called by smartops_nb.cli.sandbox)."""
    s = sub.add_parser("sandbox", help="the SmartAmazon sandbox: API, PostgreSQL and Redis on loopback",
                       description="Run a small real SmartAmazon (API, PostgreSQL, Redis) on loopback and inject "
                                   "the seed's faults into it.")
    ssub = s.add_subparsers(dest="sandbox_command", required=True, parser_class=parser_class)
    for name, helptext in (("up", "start the sandbox (idempotent)"), ("status", "show each component"),
                           ("heal", "remove every injected fault"), ("down", "stop everything")):
        x = ssub.add_parser(name, help=helptext, description=helptext)
        x.add_argument("--dir", help="sandbox state folder (default $SMARTOPS_SANDBOX_DIR or ~/.smartops/sandbox)")
        if name == "up":
            x.add_argument("--containers", action="store_true",
                           help="run the API, PostgreSQL and Redis as containers (smartamazon-api-prod, "
                                "smartamazon-db, smartamazon-redis) on a podman API service of the sandbox's own")
            x.add_argument("--compose", action="store_true",
                           help="run them as the Docker Compose project smartamazon (services backend, postgres, "
                                "redis; deploy/compose/docker-compose.yml) with docker-compose, on that podman service")
            for part, default in DEFAULT_PORTS.items():
                x.add_argument(f"--{part}-port", type=_port, metavar="PORT",
                               help=f"loopback port of the sandbox's {part} (default "
                                    f"$SMARTOPS_SANDBOX_{part.upper()}_PORT or {default})")
        x.set_defaults(func=main)
    x = ssub.add_parser("fault", help="inject a fault (see `smartops sandbox fault --list`)",
                        description="Inject one of the seed's faults into the running sandbox.")
    x.add_argument("name", nargs="?", help="fault name")
    x.add_argument("--list", action="store_true", help="list the faults")
    x.add_argument("--dir", help="sandbox state folder")
    x.set_defaults(func=main)
