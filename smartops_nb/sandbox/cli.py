"""`smartops sandbox up | status | fault NAME | heal | down`: the sandbox from the command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .manager import Sandbox, default_state_dir, known_faults, STATE_FILE


def _sandbox(args) -> Sandbox:
    d = Path(args.dir) if getattr(args, "dir", None) else default_state_dir()
    if (d / STATE_FILE).exists():
        return _load(d)
    from .manager import default_ports

    p = default_ports()
    if getattr(args, "containers", False):
        return _container_sandbox(d, p)
    return Sandbox(d, p["api"], p["postgres"], p["redis"])


def _load(d: Path) -> Sandbox:
    """The sandbox recorded in ``d``: host processes, or containers on the sandbox's own engine."""
    if json.loads((d / STATE_FILE).read_text()).get("mode") == "containers":
        from .containers import ContainerSandbox

        return ContainerSandbox.load(d)
    return Sandbox.load(d)


def _container_sandbox(d: Path, ports: dict) -> Sandbox:
    """Container mode: a podman API service of the sandbox's own (private storage) runs the three
    containers; its pid is kept in ``podman/podman-service.pid`` so ``down`` can stop it."""
    from .containers import ContainerSandbox
    from .podman import PodmanService

    service = PodmanService(d / "podman")
    url = service.start(timeout=60)
    service._proc = None  # detached: it outlives this command, and `down` stops it by pid
    return ContainerSandbox(url, d, ports["api"], ports["postgres"], ports["redis"])


def _stop_engine(d: Path) -> None:
    import os
    import signal

    pid_file = d / "podman" / "podman-service.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink()


def _print_status(status: dict) -> None:
    for name, c in status.items():
        where = c.get("url") or c.get("dsn") or ""
        state = "running" if c.get("running") else "stopped"
        extra = ""
        if name == "api" and isinstance(c.get("health"), (list, tuple)):
            extra = f" health={c['health'][0]} {json.dumps(c['health'][1])}"
        print(f"{name:<9} {state:<8} pid={c.get('pid')} {where}{extra}")


def main(args) -> int:
    cmd = args.sandbox_command
    if cmd == "fault" and (args.list or not args.name):
        from .api import FAULTS

        for name in known_faults():
            print(f"{name:<18} {FAULTS[name].description}")
        return 0 if args.list else 2
    sb = _sandbox(args)
    if cmd == "up":
        print(f"starting the SmartAmazon sandbox in {sb.state_dir} ...", file=sys.stderr)
        _print_status(sb.up())
        log = {} if sb.state().get("mode") == "containers" else {"api_log_path": str(sb.api_log)}
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
        print(f"fault {args.name} injected: {json.dumps(result.get('result', result), default=str)}")
        return 0
    if cmd == "heal":
        print(f"healed: {json.dumps(sb.heal(), default=str)}")
        return 0
    if cmd == "down":
        sb.down()
        _stop_engine(sb.state_dir)
        print("sandbox stopped")
        return 0
    return 2
