"""Sandbox faults run by the managing process (the CLI, a test), not by the API process.

The API's registry (:data:`smartops_sandbox.api.FAULTS`) breaks what lives inside the API:
its pool, its cache use, its queries. These break what is *around* it, from the outside, as an
incident would: Redis filled to its limit, a filesystem filled with old logs and backups, the
database stopped, the API killed, a bad version deployed. Each entry is
``HostFault(description, inject(sandbox) -> dict, heal(sandbox, recorded) -> dict, modes)``;
what ``inject`` returns is recorded in ``state.json`` (``host_faults``) so that ``heal`` from
another process (``smartops sandbox heal``) knows what to undo (e.g. the previous ``maxmemory``).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

MIB = 2 ** 20
OLD_S = 60 * 86400            # the disk fault's old files: twice the runbook's 30-day limit

REDIS_FILLER = "filler:"
REDIS_MAXMEMORY = "4mb"
REDIS_VALUE = b"x" * 1024

DISK_DIR = "disk"             # under the state dir
DISK_SIZE = "16m"

BAD_IMAGE = "smartamazon-api:bad"
BAD_START = ("echo 'smartamazon-api (bad) starting'; "
             "echo 'FATAL: start-up failed: configuration key DATABASE_URL is missing' >&2; exit 1")


@dataclass(frozen=True)
class HostFault:
    description: str
    inject: Callable[[Any], dict]
    heal: Callable[[Any, dict], dict]
    modes: tuple[str, ...] = field(default=("process", "containers"))


def mode_of(sandbox) -> str:
    return "containers" if hasattr(sandbox, "stop_database") else "process"


# ------------------------------------------------------------------------------- redis-full
def _redis(sandbox):
    import redis

    return redis.Redis.from_url(sandbox.redis.url, socket_timeout=10, socket_connect_timeout=5)


def _inject_redis_full(sandbox) -> dict:
    import redis

    r = _redis(sandbox)
    try:
        cfg = r.config_get("maxmemory")["maxmemory"], r.config_get("maxmemory-policy")["maxmemory-policy"]
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", REDIS_MAXMEMORY)
        written, refused, i = 0, False, 0
        while not refused and i < 20000:          # 4 MB of 1 KiB values: a few thousand keys
            pipe = r.pipeline(transaction=False)
            for j in range(i, i + 200):
                pipe.set(f"{REDIS_FILLER}{j}", REDIS_VALUE)
            replies = pipe.execute(raise_on_error=False)
            refused = any(isinstance(x, redis.exceptions.OutOfMemoryError) for x in replies)
            written += sum(1 for x in replies if x is True)
            i += 200
        # a pipeline's own query buffer counts as used memory: top up one key at a time until refused
        for j in range(i, i + 5000):
            try:
                r.set(f"{REDIS_FILLER}{j}", REDIS_VALUE)
                written += 1
            except redis.exceptions.OutOfMemoryError:
                break
    finally:
        r.close()
    # the refused SET left used_memory just over the limit, but part of that was this client's
    # buffers, freed as it disconnects: pin maxmemory under what the keys alone now hold, so
    # Redis keeps refusing writes whoever connects next
    r = _redis(sandbox)
    try:
        used = int(r.info("memory")["used_memory"])
        limit = max(used - 64 * 1024, 1024 * 1024)
        r.config_set("maxmemory", limit)
        try:
            r.set(f"{REDIS_FILLER}probe", REDIS_VALUE)
            refused_now = False
        except redis.exceptions.OutOfMemoryError:
            refused_now = True
        return {"maxmemory_before": cfg[0], "policy_before": cfg[1], "maxmemory": limit,
                "used_memory": used, "policy": "noeviction", "filler_keys": written, "writes_refused": refused_now}
    finally:
        r.close()


def _heal_redis_full(sandbox, recorded: dict) -> dict:
    r = _redis(sandbox)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in r.scan_iter(match=REDIS_FILLER + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += r.delete(*batch)
                batch = []
        if batch:
            deleted += r.delete(*batch)
        maxmemory = recorded.get("maxmemory_before") or sandbox.redis.maxmemory
        policy = recorded.get("policy_before") or sandbox.redis.policy
        r.config_set("maxmemory", maxmemory)
        r.config_set("maxmemory-policy", policy)
        r.config_resetstat()   # the OOM refusals and evictions counted while full
        return {"filler_keys_deleted": deleted, "maxmemory": maxmemory, "policy": policy}
    finally:
        r.close()


# ------------------------------------------------------------------------------- disk-full
def disk_dir(sandbox) -> Path:
    return Path(sandbox.state_dir) / DISK_DIR


def _mounted(path: Path) -> bool:
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return False
    target = str(path)
    return any(line.split()[1] == target for line in mounts if len(line.split()) > 1)


def _write(path: Path, nbytes: int, age_s: float = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, nbytes))
    if age_s:
        t = time.time() - age_s
        os.utime(path, (t, t))


def _inject_disk_full(sandbox) -> dict:
    if os.geteuid() != 0:
        raise ValueError("disk-full needs root: it mounts a tmpfs (run the sandbox command as root)")
    if not shutil.which("mount"):
        raise RuntimeError("disk-full needs the mount command (util-linux)")
    mnt = disk_dir(sandbox)
    if _mounted(mnt):
        _unmount(mnt)
    mnt.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", "tmpfs", str(mnt)],
                          capture_output=True, text=True, timeout=15)
    if proc.returncode != 0:
        reason = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"disk-full: mount -t tmpfs {mnt} refused: {reason[-1] if reason else proc.returncode}")
    logs, backups = mnt / "logs", mnt / "backups"
    for i in range(3):
        _write(logs / f"app-{i}.log", 2 * MIB, OLD_S)
        _write(backups / f"db-{i}.sql.gz", 2 * MIB, OLD_S)
    _write(logs / "app.log", 1 * MIB)
    # fresh backup tops the filesystem up to ~95% used
    st = os.statvfs(mnt)
    total, avail = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    _write(backups / "db-today.sql.gz", int(avail - 0.05 * total))
    st = os.statvfs(mnt)
    used_pct = round(100.0 * (st.f_blocks - st.f_bfree) / max(st.f_blocks, 1), 1)
    return {"path": str(mnt), "size": DISK_SIZE, "used_pct": used_pct, "log_dirs": [str(logs)],
            "backup_dirs": [str(backups)], "old_logs": 3, "old_backups": 3}


def _unmount(mnt: Path) -> bool:
    if not _mounted(mnt):
        return False
    proc = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=15)
    if proc.returncode != 0:   # busy: detach it now, it goes when the last user lets go
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, text=True, timeout=15)
    return not _mounted(mnt)


def _heal_disk_full(sandbox, recorded: dict) -> dict:
    mnt = disk_dir(sandbox)
    out = {"path": str(mnt), "unmounted": _unmount(mnt)}
    _remove_mountpoint(mnt)
    return out


def _remove_mountpoint(mnt: Path) -> None:
    """The empty mount point goes too: a fresh sandbox has no disk folder (the runbook says so)
    rather than one that measures whatever filesystem holds the state dir."""
    if not _mounted(mnt):
        try:
            mnt.rmdir()
        except OSError:   # missing, or not empty: leave it
            pass


# ------------------------------------------------------------------------------- database-down
def _inject_database_down(sandbox) -> dict:
    if mode_of(sandbox) == "containers":
        sandbox.stop_database()
        return {"stopped": sandbox.names["postgres"]}
    sandbox.postgres.stop()
    return {"stopped": f"postgres pid (port {sandbox.postgres.port})"}


def _heal_database_down(sandbox, recorded: dict) -> dict:
    if mode_of(sandbox) == "containers":
        sandbox.start_database()          # waits until it accepts connections
        return {"started": sandbox.names["postgres"]}
    sandbox.postgres.start()              # pg_ctl start -w: returns once it accepts connections
    return {"started": f"postgres pid {sandbox.postgres.pid}"}


# ------------------------------------------------------------------------------- api-crash
def _inject_api_crash(sandbox) -> dict:
    if mode_of(sandbox) == "containers":
        return sandbox.crash_api()
    pid = sandbox.api_pid
    if not pid or not sandbox._api_running():
        raise RuntimeError("api-crash: the API process is not running")
    os.kill(pid, signal.SIGKILL)
    from .postgres_server import _wait_gone

    _wait_gone(pid, 10)
    if sandbox._api_proc is not None:
        sandbox._api_proc.wait(5)
    return {"killed": f"api pid {pid}"}


def _heal_api_crash(sandbox, recorded: dict) -> dict:
    if sandbox._api_running():
        return {"restarted": False}
    sandbox.restart_api()
    return {"restarted": True}


# ------------------------------------------------------------------------------- bad-deploy
def _inject_bad_deploy(sandbox) -> dict:
    if mode_of(sandbox) != "containers":
        raise ValueError("bad-deploy needs the container sandbox (smartops sandbox up --containers)")
    from .podman import BASE_IMAGE, build_base_image, derive_image

    client = sandbox.client
    build_base_image(client, BASE_IMAGE)
    # an ENTRYPOINT, not a CMD: a deploy keeps the container's own command (the API's), which the
    # shell script ignores, so the new version really dies at start
    derive_image(client, BAD_IMAGE, base=BASE_IMAGE, entrypoint=["sh", "-c", BAD_START],
                 labels={"org.opencontainers.image.version": "bad"})
    done = sandbox.deploy_api(BAD_IMAGE)
    ctr = sandbox._container("api")
    if ctr is not None:
        ctr.wait(timeout=30)
        ctr.reload()
    return {**done, "status": ctr.status if ctr is not None else done["status"]}


def _heal_bad_deploy(sandbox, recorded: dict) -> dict:
    from .podman import BASE_IMAGE

    return sandbox.redeploy_api(recorded.get("image_before") or BASE_IMAGE)


# ------------------------------------------------------------------------------- api-oom
def _inject_api_oom(sandbox) -> dict:
    """SIGUSR1 makes the API allocate until its memory limit kills it (see smartops_sandbox.api)."""
    ctr = sandbox._container("api")
    if ctr is None or ctr.status != "running":
        raise RuntimeError(f"api-oom: container {sandbox.names['api']} is not running")
    limit = (ctr.attrs.get("HostConfig") or {}).get("Memory") or 0
    env = (ctr.attrs.get("Config") or {}).get("Env") or []
    if not limit or "SMARTAMAZON_MEMORY_FAULT=1" not in env:
        raise ValueError(f"api-oom needs an API container with a memory limit and SMARTAMAZON_MEMORY_FAULT=1 "
                         f"(smartops sandbox up --compose); {ctr.name} has limit {limit or 'none'}")
    ctr.kill(signal="SIGUSR1")
    result = ctr.wait(timeout=60)
    return {"killed": ctr.name, "exit_code": result.get("StatusCode"), "memory_limit": limit}


HOST_FAULTS: dict[str, HostFault] = {
    "redis-full": HostFault(f"Redis maxmemory {REDIS_MAXMEMORY} with noeviction, filled with keys without TTL "
                            "until it refuses writes", _inject_redis_full, _heal_redis_full),
    "disk-full": HostFault(f"a {DISK_SIZE[:-1]} MB tmpfs at STATE_DIR/{DISK_DIR} filled >90% with 60-day-old logs "
                           "and backups (root only)", _inject_disk_full, _heal_disk_full),
    "database-down": HostFault("PostgreSQL stopped (container mode: the smartamazon-db container)",
                               _inject_database_down, _heal_database_down),
    "api-crash": HostFault("the API killed with SIGKILL (container mode: smartamazon-api-prod exits 137; "
                           "compose: every backend replica killed with SIGQUIT, exit 131)",
                           _inject_api_crash, _heal_api_crash),
    "bad-deploy": HostFault(f"{BAD_IMAGE}, which exits 1 at start, deployed over smartamazon-api-prod "
                            "(--containers only)", _inject_bad_deploy, _heal_bad_deploy, ("containers",)),
    "api-oom": HostFault("the API grows until its container's memory limit kills it, exit 137 (--compose only)",
                         _inject_api_oom, _heal_api_crash, ("containers",)),
}

# heal order: bring the database back before the API, the deploy before the crash
HEAL_ORDER = ["database-down", "bad-deploy", "api-crash", "api-oom", "redis-full", "disk-full"]


def on_down(sandbox) -> dict:
    """What ``down`` must undo even though the services stop: the tmpfs mount."""
    mnt = disk_dir(sandbox)
    out = {"disk_unmounted": _unmount(mnt)} if _mounted(mnt) else {}
    _remove_mountpoint(mnt)
    return out
