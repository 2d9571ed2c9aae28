"""Where record files live: a folder (the default) or an ``s3://bucket/prefix`` (any S3-compatible store).

Both keep one object per record under its record name, never overwritten. A folder writes through
:mod:`.record`'s atomic stage-and-link; S3 goes through fsspec/s3fs (papermill's own I/O speaks
``s3://`` too), where one PUT is atomic and the index lock (held by the writer) keeps names unique.
S3's endpoint and credentials come the standard way (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``); every call has a connect and read timeout and bounded
retries, and any failure to reach the store is :class:`StorageUnavailable` naming the endpoint.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable
from smartops_nb.support.files import write_synced
from smartops_nb.support.reasons import flat

from . import record

#: botocore: seconds to connect / to wait for a response, attempts in all (S3 must not hang a run).
S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 30
S3_ATTEMPTS = 2


class StorageUnavailable(OSError):
    """The store cannot be reached or refused the call; the message names it (one line)."""


def record_files(folder: Path) -> list[Path]:
    """The notebooks in the archive folder (hidden and temporary files are not records)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.ipynb") if p.is_file() and not p.name.startswith("."))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def name_in(where: "str | os.PathLike") -> str:
    """A record's name from where it is: a path, or an ``s3://`` URL (:meth:`Storage.where`)."""
    return str(where).rsplit("/", 1)[-1]


#: No file system takes a longer name (and record names are far shorter: see ``record.MAX_SLUG``).
NAME_MAX = 255


def is_record_name(name: str) -> bool:
    return (name.endswith(".ipynb") and not name.startswith(".")
            and len(name.encode("utf-8", "surrogatepass")) <= NAME_MAX)


class Storage:
    """The record files of one archive, by name."""

    url = ""

    def names(self) -> list[str]:
        """Every record's name, sorted."""
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def hashes(self, names: Iterable[str]) -> dict[str, tuple[str, int] | Exception]:
        """SHA-256 and size of each named record (an exception where it could not be read)."""
        out: dict[str, tuple[str, int] | Exception] = {}
        for name in names:
            try:
                data = self.read(name)
                out[name] = (hashlib.sha256(data).hexdigest(), len(data))
            except Exception as e:  # one unreadable record must not hide the others
                out[name] = e
        return out

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def put_new(self, data: bytes, summary: dict[str, Any], taken=lambda name: False) -> str:
        """Store ``data`` under the first free record name (``taken``: names the index already holds)."""
        raise NotImplementedError

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under exactly ``name`` (``archive migrate``); FileExistsError if it is taken."""
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def where(self, name: str) -> str:
        """How to name one record in a message: a path or a URL."""
        return f"{self.url.rstrip('/')}/{name}"

    def temporaries(self) -> list[str]:
        """Files an interrupted write left behind (not records)."""
        return []


class FolderStorage(Storage):
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.url = str(self.folder)

    def names(self):
        return [p.name for p in record_files(self.folder)]

    def read(self, name):
        return (self.folder / name).read_bytes()

    def hashes(self, names):
        out: dict[str, tuple[str, int] | Exception] = {}
        for name in names:
            path = self.folder / name
            try:
                out[name] = (file_sha256(path), path.stat().st_size)
            except OSError as e:
                out[name] = e
        return out

    def exists(self, name):
        return (self.folder / name).is_file()

    def put_new(self, data, summary, taken=lambda name: False):
        return record.publish(record.stage(data, self.folder, summary), self.folder, summary).name

    def put(self, name, data):
        import tempfile

        self.folder.mkdir(parents=True, exist_ok=True)
        fd, staged = tempfile.mkstemp(dir=self.folder, prefix=".record-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write_synced(f, data)
            os.chmod(staged, 0o644)
            os.link(staged, self.folder / name)  # never over an existing record
        finally:
            os.unlink(staged)

    def delete(self, name):
        (self.folder / name).unlink()

    def where(self, name):
        return str(self.folder / name)

    def temporaries(self):
        return [p.name for p in sorted(self.folder.glob(".record-*.tmp"))]


_FILESYSTEMS: dict[tuple, Any] = {}


class S3Storage(Storage):
    """``s3://bucket/prefix``: one object per record, ``prefix/NAME.ipynb``."""

    def __init__(self, url: str):
        rest = url[len("s3://"):].strip("/")
        self.bucket, _, self.prefix = rest.partition("/")
        if not self.bucket:
            raise ValueError(f"{url!r} names no bucket (s3://bucket/prefix)")
        self.url = f"s3://{rest}"
        self.endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the default AWS endpoint"
        self._fs = None

    @property
    def fs(self):
        if self._fs is None:
            key = tuple(os.environ.get(v) for v in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID"))
            self._fs = _FILESYSTEMS.get(key) or _FILESYSTEMS.setdefault(key, self._new_fs())
        return self._fs

    @staticmethod
    def _new_fs():
        """One s3fs client per endpoint and key in a process (setting one up costs ~0.1 s)."""
        import s3fs

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        client = {"region_name": region}
        if os.environ.get("AWS_ENDPOINT_URL"):
            client["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
        fs = s3fs.S3FileSystem(
            client_kwargs=client, skip_instance_cache=True, use_listings_cache=False,
            config_kwargs={"connect_timeout": S3_CONNECT_TIMEOUT_S, "read_timeout": S3_READ_TIMEOUT_S,
                           "retries": {"max_attempts": S3_ATTEMPTS, "mode": "standard"}})
        fs.retries = S3_ATTEMPTS  # s3fs's own retry loop (5 by default, with back-off) on top of botocore's
        return fs

    def _key(self, name: str) -> str:
        return f"{self.bucket}/{self.prefix}/{name}" if self.prefix else f"{self.bucket}/{name}"

    def _call(self, what: str, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except (FileNotFoundError, FileExistsError):
            raise
        except Exception as e:
            reason = flat(e) or type(e).__name__
            raise StorageUnavailable(f"S3 {self.endpoint} ({self.url}): cannot {what}: {reason}") from None

    def names(self):
        def listing():
            try:
                found = self.fs.find(self._key("").rstrip("/"), maxdepth=1, withdirs=False)
            except FileNotFoundError:
                return []
            return sorted(n for n in (Path(k).name for k in found) if is_record_name(n))
        return self._call("list the records", listing)

    def read(self, name):
        return self._call(f"read {name}", self.fs.cat_file, self._key(name))

    def files(self, folders=("",)) -> list[str]:
        """Names of every object directly under the prefix (``""``) or the given sub-folders of it."""
        def listing():
            found = []
            for sub in folders:
                try:
                    found += [Path(k).name for k in self.fs.find(self._key(sub).rstrip("/"), maxdepth=1)]
                except FileNotFoundError:
                    pass
            return found
        return self._call("list", listing)

    def hashes(self, names):
        names = list(names)
        if not names:
            return {}
        got = self._call("read the records", self.fs.cat, [self._key(n) for n in names], on_error="return")
        out: dict[str, tuple[str, int] | Exception] = {}
        for n in names:
            data = got.get(self._key(n))
            out[n] = data if isinstance(data, Exception) else (hashlib.sha256(data).hexdigest(), len(data))
        return out

    def exists(self, name):
        return self._call(f"look for {name}", self.fs.exists, self._key(name))

    def _pipe(self, name: str, data: bytes) -> None:
        try:
            self.fs.pipe_file(self._key(name), data)
        except (FileNotFoundError, PermissionError):
            # no such bucket yet (SeaweedFS answers AccessDenied, AWS NoSuchBucket): the first record makes it
            if self.fs.exists(self.bucket):
                raise
            try:
                self.fs.mkdir(self.bucket)
            except Exception:  # another writer made it meanwhile
                if not self.fs.exists(self.bucket):
                    raise
            self.fs.pipe_file(self._key(name), data)

    def put_new(self, data, summary, taken=lambda name: False):
        def put():
            for n in range(1000):
                name = record.record_name(summary, n)
                if not taken(name) and not self.fs.exists(self._key(name)):
                    self._pipe(name, data)
                    return name
            raise FileExistsError(f"no free record name in {self.url}")
        return self._call("write the record", put)

    def put(self, name, data):
        def put():
            if self.fs.exists(self._key(name)):
                raise FileExistsError(f"{self.where(name)} exists")
            self._pipe(name, data)
        self._call(f"write {name}", put)

    def delete(self, name):
        self._call(f"delete {name}", self.fs.rm_file, self._key(name))


#: The storages by URL scheme ("": a plain path, a folder); :func:`register_storage` adds one, the way
#: papermill registers its I/O handlers. A factory takes the URL and raises ValueError for a bad one.
STORAGES: dict[str, Callable[[str], Storage]] = {}


def register_storage(scheme: str, factory: Callable[[str], Storage]) -> None:
    STORAGES[scheme] = factory


register_storage("", lambda url: FolderStorage(Path(url)))
register_storage("s3", S3Storage)


def open_storage(url: str | os.PathLike) -> Storage:
    """The storage of ``url`` by its scheme; ValueError when no storage is registered for it."""
    text = str(url)
    scheme = text.split("://", 1)[0] if "://" in text else ""
    factory = STORAGES.get(scheme)
    if factory is None:
        known = " or ".join(f"{s}://..." for s in STORAGES if s)
        raise ValueError(f"{text!r}: a folder or {known}")
    return factory(text)
