"""A real Docker-API engine for tests and the sandbox's container mode: podman's API service.

No Docker daemon runs on the build machines and no image registry is reachable, so:

* :class:`PodmanService` runs ``podman system service --time=0 unix://RUN_DIR/podman.sock`` as a
  detached process (its own session) with a *private* ``CONTAINERS_CONF`` (and, by default, a
  private ``CONTAINERS_STORAGE_CONF``) inside ``run_dir``: the system configuration under
  ``/etc/containers`` is never touched and the images and containers of one service are not seen
  by (or pruned from under) anyone else's. The ``docker`` SDK talks to the socket it returns.
* :func:`build_base_image` imports a minimal root filesystem (Debian's ``busybox-static`` binary,
  its applet links in ``/bin``, ``lib -> usr/lib``, ``lib64 -> usr/lib64``, ``/tmp``,
  ``/etc/passwd`` ...) as ``smartamazon-base:1``; :func:`derive_image` commits a new tag from it
  with another command, environment and labels (``smartamazon-api:1``, ``smartamazon-api:2`` ...).

How a container runs the host's Python
--------------------------------------
The base image holds no Python. A container runs the host's interpreter by mounting it
read-only (:func:`host_python_volumes` builds the mapping)::

    -v /usr:/usr:ro                      # the dynamic loader and libc (via lib/lib64 -> usr/...)
    -v PREFIX:PREFIX:ro                  # sys.base_prefix, when it is not under /usr (pyenv...)
    -v VENV:VENV:ro                      # sys.prefix, the virtual environment, when there is one
    -v SRC:SRC:ro                        # editable-install sources (e.g. the project checkout)
    --network host                       # the API listens on, and reaches PostgreSQL/Redis at, 127.0.0.1

and uses ``sys.executable`` (the venv's ``python``) as the command, e.g.
``client.containers.run("smartamazon-base:1", [sys.executable, "-m", "http.server", "8000"],
volumes=host_python_volumes(), network_mode="host", detach=True)``.

Settings this machine needs (MACHINE-FACTS): ``runtime = "runc"`` (crun refuses the hybrid
cgroup v1/v2 layout) and ``default_ulimits`` nofile/nproc 1024 (no CAP_SYS_RESOURCE).
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

PODMAN_SETTINGS = {
    "containers": {"default_ulimits": '["nofile=1024:1024", "nproc=1024:1024"]'},
    "engine": {"runtime": '"runc"'},
}
BASE_IMAGE = "smartamazon-base:1"
BUSYBOX = "/bin/busybox"
DEFAULT_PATH = "/bin:/usr/local/bin:/usr/bin:/sbin:/usr/sbin"


class PodmanError(RuntimeError):
    """podman is missing, or its API service did not come up."""


def podman_available() -> str | None:
    """The path of the ``podman`` binary, or None."""
    return shutil.which("podman")


def _conf_text(extra: dict[str, dict[str, str]] | None = None) -> str:
    sections: dict[str, dict[str, str]] = {k: dict(v) for k, v in PODMAN_SETTINGS.items()}
    for sec, kv in (extra or {}).items():
        sections.setdefault(sec, {}).update(kv)
    lines = ["# written by smartops_sandbox.podman"]
    for sec, kv in sections.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {v}" for k, v in kv.items()]
    return "\n".join(lines) + "\n"


def short_runroot(run_dir: Path) -> Path:
    """podman's runroot for a service whose files live in ``run_dir``: conmon makes each container's
    sockets under it and a unix socket path must fit in 108 bytes, so it stays short whatever
    ``run_dir`` is (with a run_dir of 44 characters or more, every container start waited 20 s).
    Derived from ``run_dir``, so another process (``smartops sandbox down``) finds the same one."""
    digest = hashlib.sha1(str(run_dir).encode()).hexdigest()[:12]
    return Path("/tmp") / f"smartops-podman-{digest}"


class PodmanService:
    """``podman system service`` on a unix socket inside ``run_dir``, started and stopped by pid.

    ``private_storage=True`` (the default) keeps images, containers and podman's state under
    ``run_dir/storage`` (the runtime folder under a short ``/tmp/smartops-podman-*``, see
    :func:`short_runroot`) so that tests can prune without touching anyone else's images; with
    ``False`` the system storage (``/var/lib/containers``) is shared with the ``podman`` CLI.
    """

    def __init__(self, run_dir: str | os.PathLike, *, private_storage: bool = True,
                 podman: str | None = None) -> None:
        self.run_dir = Path(run_dir).absolute()
        self.private_storage = private_storage
        self.podman = podman or podman_available()
        self.socket_path = self.run_dir / "podman.sock"
        self.conf_path = self.run_dir / "containers.conf"
        self.storage_conf_path = self.run_dir / "storage.conf"
        self.log_path = self.run_dir / "podman-service.log"
        self.pid_path = self.run_dir / "podman-service.pid"
        self.runroot = short_runroot(self.run_dir)
        self.pid: int | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def env(self) -> dict[str, str]:
        """The environment for the service and for any ``podman`` CLI call against its storage."""
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(self.conf_path)
        if self.private_storage:
            env["CONTAINERS_STORAGE_CONF"] = str(self.storage_conf_path)
        return env

    def _write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        extra: dict[str, dict[str, str]] = {}
        if self.private_storage:
            st = self.run_dir / "storage"
            extra["engine"] = {"tmp_dir": f'"{self.run_dir / "tmp"}"',
                               "volume_path": f'"{st / "volumes"}"'}
            self.storage_conf_path.write_text(
                "[storage]\n"
                'driver = "overlay"\n'
                f'graphroot = "{st}"\n'
                f'runroot = "{self.runroot}"\n'
            )
        self.conf_path.write_text(_conf_text(extra))

    def start(self, timeout: float = 30.0) -> str:
        """Start the service; return its ``unix://`` URL once ``ping()`` answers (bounded)."""
        if self.pid is not None:
            return self.url
        if not self.podman:
            raise PodmanError("podman is not installed (apt-get install podman runc busybox-static)")
        import docker  # the SDK is a project dependency

        self._write_config()
        if self.socket_path.exists():
            self.socket_path.unlink()
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                [self.podman, "system", "service", "--time=0", self.url],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env(),
                # conmon drops an "oom" marker file in its working folder when a container is
                # killed for memory: keep that inside run_dir, not wherever we were started
                cwd=self.run_dir, start_new_session=True, close_fds=True,
            )
        finally:
            log.close()
        self.pid = self._proc.pid
        self.pid_path.write_text(f"{self.pid}\n")
        deadline = time.monotonic() + timeout
        last = "socket not created yet"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.pid = None
                raise PodmanError(f"podman system service exited with {self._proc.returncode}: "
                                  f"{self._log_tail()}")
            if self.socket_path.exists():
                try:
                    client = docker.DockerClient(base_url=self.url, timeout=5)
                    try:
                        if client.ping():
                            return self.url
                    finally:
                        client.close()
                except Exception as exc:  # not answering yet
                    last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        self.stop()
        raise PodmanError(f"podman API at {self.url} did not answer within {timeout:.0f}s ({last}); "
                          f"log: {self._log_tail()}")

    def _log_tail(self, n: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the service by its pid (SIGTERM, then SIGKILL); unmount what it left mounted."""
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self._proc is not None:
                try:
                    self._proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    self._proc.wait(timeout=5)
            self.pid = None
            self._proc = None
        if self.private_storage:
            self._unmount_leftovers()

    def _unmount_leftovers(self) -> None:
        """podman bind-mounts ``graphroot/overlay`` onto itself; release it (and anything else
        under run_dir) so the directory can be deleted."""
        try:
            mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        except OSError:
            return
        roots = (str(self.run_dir) + "/", str(self.runroot) + "/")
        for mp in sorted((m for m in mounts if m.startswith(roots)), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True, timeout=10)
        if self.private_storage:
            shutil.rmtree(self.runroot, ignore_errors=True)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ----------------------------------------------------------------------------------- images


def _client(client_or_socket: Any, timeout: int = 30):
    import docker

    if isinstance(client_or_socket, str):
        return docker.DockerClient(base_url=client_or_socket, timeout=timeout), True
    return client_or_socket, False


def _image_exists(client: Any, ref: str) -> bool:
    import docker

    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def busybox_applets(busybox: str = BUSYBOX) -> list[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=10)
    return [a for a in out.stdout.split() if a and "/" not in a]


def rootfs_tar(busybox: str = BUSYBOX) -> bytes:
    """A minimal root filesystem as an uncompressed tarball (about 2 MB)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        def add_dir(name: str, mode: int = 0o755) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, mode, 0
            tf.addfile(ti)

        def add_link(name: str, target: str) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, target, 0o777
            tf.addfile(ti)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.size = mode, len(data)
            tf.addfile(ti, io.BytesIO(data))

        for d in ["bin", "sbin", "usr", "usr/lib", "usr/lib64", "usr/bin", "etc", "proc", "sys",
                  "dev", "root", "run", "var", "var/log", "home", "opt", "srv", "work", "data"]:
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_dir("var/tmp", 0o1777)
        add_link("lib", "usr/lib")
        add_link("lib64", "usr/lib64")
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                               b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        add_file("etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n")
        add_file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
        add_file("etc/os-release", b'NAME="smartamazon-base"\nID=busybox\n')
        add_file("bin/busybox", Path(busybox).read_bytes(), 0o755)
        for applet in busybox_applets(busybox):
            if applet != "busybox":
                add_link(f"bin/{applet}", "busybox")
    return buf.getvalue()


def _split_ref(ref: str) -> tuple[str, str]:
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        return ref, "latest"
    return name, tag


def build_base_image(client_or_socket: Any, tag: str = BASE_IMAGE, *, busybox: str = BUSYBOX,
                     changes: Iterable[str] = ()) -> str:
    """Import the busybox root filesystem as ``tag`` unless it exists; return the image id.

    ``client_or_socket`` is a ``docker.DockerClient`` or a ``unix://`` URL. The import goes through
    the Engine API (podman's compat import ignores the tag, so it is imported under a temporary
    name and re-tagged).
    """
    client, owned = _client(client_or_socket)
    try:
        if _image_exists(client, tag):
            return client.images.get(tag).id
        if not Path(busybox).exists():
            raise PodmanError(f"{busybox} is missing (apt-get install busybox-static)")
        tmp_repo = f"smartops-import-{uuid.uuid4().hex[:12]}"
        client.api.import_image_from_data(
            rootfs_tar(busybox), repository=tmp_repo, tag="latest",
            changes=[f"ENV PATH={DEFAULT_PATH}", 'CMD ["/bin/sh"]', "WORKDIR /", *changes],
        )
        image = client.images.get(f"{tmp_repo}:latest")
        repo, t = _split_ref(tag)
        image.tag(repo, t)
        client.images.remove(f"{tmp_repo}:latest")
        return image.id
    finally:
        if owned:
            client.close()


def derive_image(client_or_socket: Any, tag: str, *, base: str = BASE_IMAGE,
                 cmd: list[str] | None = None, entrypoint: list[str] | None = None,
                 env: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                 workdir: str | None = None, replace: bool = True) -> str:
    """Commit ``tag`` from ``base`` with another CMD/ENTRYPOINT/ENV/LABEL; return the image id.

    With ``replace=False`` an existing ``tag`` is kept as it is.
    """
    import json

    client, owned = _client(client_or_socket)
    try:
        if not replace and _image_exists(client, tag):
            return client.images.get(tag).id
        changes = []
        if cmd is not None:
            changes.append(f"CMD {json.dumps(cmd)}")
        if entrypoint is not None:
            changes.append(f"ENTRYPOINT {json.dumps(entrypoint)}")
        for k, v in (env or {}).items():
            changes.append(f"ENV {k}={v}")
        for k, v in (labels or {}).items():
            changes.append(f"LABEL {json.dumps(k)}={json.dumps(v)}")
        if workdir:
            changes.append(f"WORKDIR {workdir}")
        ctr = client.containers.create(base, command=["/bin/true"])
        try:
            repo, t = _split_ref(tag)
            image = ctr.commit(repository=repo, tag=t, changes=changes)
        finally:
            ctr.remove(force=True)
        return image.id
    finally:
        if owned:
            client.close()


def host_python_volumes(extra: Iterable[str | os.PathLike] = ()) -> dict[str, dict[str, str]]:
    """``volumes=`` for ``containers.run``: /usr, the interpreter's prefix, the venv (and
    ``extra`` folders, e.g. the project checkout for an editable install), all read-only."""
    paths = ["/usr", sys.base_prefix, sys.prefix, *map(str, extra)]
    vols: dict[str, dict[str, str]] = {}
    for p in paths:
        p = os.path.realpath(p)
        if any(p == v or p.startswith(v.rstrip("/") + "/") for v in vols):
            continue
        vols[p] = {"bind": p, "mode": "ro"}
    return vols
