"""A stand-in Kubernetes API server on loopback, for tests and offline demos.

No kube-apiserver can run on the build machines, so this module serves the slice of the real
Kubernetes REST API that the runbooks use, with objects built from the official ``kubernetes``
client's own models and serialized with ``ApiClient().sanitize_for_serialization``. It keeps state
and acts as a tiny deployment + replicaset controller and kubelet:

* a change of a deployment's pod template creates a ReplicaSet with the next revision (or, as on a
  real rollback, reuses the ReplicaSet whose template matches and moves its revision up), scales
  the others to 0 and creates the new pods;
* a change of ``spec.replicas`` (or the scale subresource) changes the pod count;
* what a pod does is decided by its image: :meth:`KubeAPIServer.set_image_behaviour` makes an
  image ``ok`` (running, ready), ``crash`` (CrashLoopBackOff, restarts growing, last exit 1),
  ``pull-error`` (ImagePullBackOff), ``err-image-pull`` (ErrImagePull) or ``oom`` (last state
  OOMKilled, exit 137). The behaviour is looked up when a pod is read, so flipping an image's
  behaviour makes existing pods start failing (a runtime fault), as well as new ones.

Usage::

    srv = KubeAPIServer()
    url = srv.start()
    srv.create_deployment("default", "smartamazon-backend", "smartamazon/api:1.0", replicas=2)
    srv.write_kubeconfig(tmp_path / "kubeconfig")
    ...
    srv.stop()

Known simplifications (deliberate): rollouts are instantaneous (no surge / maxUnavailable: the
old ReplicaSet goes to 0 at once, even when the new pods never become ready); timestamps have
second resolution like the real server; watches, field selectors, server-side apply and
protobuf/CBOR are not served.
"""
from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit, unquote

from kubernetes import client as k8s

__all__ = ["KubeAPIServer", "BEHAVIOURS", "REVISION_ANNOTATION", "RESTARTED_AT_ANNOTATION"]

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
HASH_LABEL = "pod-template-hash"

BEHAVIOURS = ("ok", "crash", "pull-error", "err-image-pull", "oom")

_DEFAULT_LOGS: dict[str, list[str]] = {
    "ok": [
        "INFO:     Started server process [1]",
        "INFO:     Waiting for application startup.",
        "INFO:     Application startup complete.",
        "INFO:     Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C to quit)",
        'INFO:     10.244.0.1:40312 - "GET /health HTTP/1.1" 200 OK',
    ],
    "crash": [
        "INFO:     Started server process [1]",
        "INFO:     Waiting for application startup.",
        "ERROR:    Traceback (most recent call last):",
        '  File "/app/main.py", line 42, in startup',
        "    await database.connect()",
        "RuntimeError: could not connect to database: DATABASE_URL is not set",
        "ERROR:    Application startup failed. Exiting.",
    ],
    "oom": [
        "INFO:     Started server process [1]",
        "INFO:     Loading product catalogue into memory",
        "INFO:     Building search index (1.9 GiB)",
    ],
    "pull-error": [],
    "err-image-pull": [],
}

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated names
_TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
_API = k8s.ApiClient()


# --------------------------------------------------------------------------- helpers

def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def _ser(obj: Any) -> Any:
    """A model (or dict of models) as the JSON the API server sends (RFC 3339 'Z' times)."""

    def fix(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, str) and _TS_RE.match(v):
            return v[: -len("+00:00")] + "Z"
        return v

    return fix(_API.sanitize_for_serialization(obj))


def _model(data: dict, klass: str) -> Any:
    """Validate JSON through the client's model (raises on a bad object, drops unknown fields)."""
    return _API._ApiClient__deserialize(data, klass)  # noqa: SLF001 - the client's own decoder


def _normalize(data: dict, klass: str) -> dict:
    return _ser(_model(data, klass))


def _rand_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(_SAFE_ALPHABET) for _ in range(n))


def _prune_empty(v: Any) -> Any:
    if isinstance(v, dict):
        out = {k: _prune_empty(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in (None, {}, [])}
    if isinstance(v, list):
        return [_prune_empty(x) for x in v]
    return v


def _template_key(template: dict) -> str:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    return json.dumps(_prune_empty(t), sort_keys=True)


def _template_hash(template: dict, collisions: int = 0) -> str:
    digest = hashlib.sha256((_template_key(template) + str(collisions)).encode()).digest()
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:10])


def _revision(obj: dict) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


# ----------------------------------------------------------------- label selectors

_SET_RE = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(sel: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in sel:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(sel: str | None) -> Callable[[dict], bool]:
    """Kubernetes label-selector syntax: ``a=b,c!=d,e in (x,y),f notin (z),g,!h``."""
    if not sel:
        return lambda labels: True
    reqs: list[Callable[[dict], bool]] = []
    for part in _split_selector(sel):
        m = _SET_RE.match(part)
        if m:
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                reqs.append(lambda l, k=key, vs=vals: l.get(k) in vs)
            else:
                reqs.append(lambda l, k=key, vs=vals: l.get(k) not in vs)
        elif "!=" in part:
            k, v = (s.strip() for s in part.split("!=", 1))
            reqs.append(lambda l, k=k, v=v: l.get(k) != v)
        elif "==" in part:
            k, v = (s.strip() for s in part.split("==", 1))
            reqs.append(lambda l, k=k, v=v: l.get(k) == v)
        elif "=" in part:
            k, v = (s.strip() for s in part.split("=", 1))
            reqs.append(lambda l, k=k, v=v: l.get(k) == v)
        elif part.startswith("!"):
            reqs.append(lambda l, k=part[1:].strip(): k not in l)
        else:
            reqs.append(lambda l, k=part: k in l)
    return lambda labels: all(r(labels or {}) for r in reqs)


def selector_string(match_labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


# ------------------------------------------------------------------------- patches

class _BadPatch(ValueError):
    pass


# patchMergeKey of the list fields a runbook may touch (from the Kubernetes API types)
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "ports": "containerPort", "imagePullSecrets": "name", "hostAliases": "ip",
    "tolerations": None, "conditions": "type", "ownerReferences": "uid",
}


def strategic_merge(orig: Any, patch: Any) -> Any:
    """Strategic merge patch (the subset used by kubectl and the Python client)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(orig, dict):
        orig = {}
    if patch.get("$patch") == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    out = copy.deepcopy(orig)
    for key, val in patch.items():
        if key.startswith("$"):  # $retainKeys, $setElementOrder/..., $deleteFromPrimitiveList/...
            continue
        if val is None:
            out.pop(key, None)
        elif isinstance(val, list) and _MERGE_KEYS.get(key) and isinstance(out.get(key), list):
            out[key] = _merge_list(out[key], val, _MERGE_KEYS[key])
        elif isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = strategic_merge(out[key], val)
        else:
            out[key] = _strip_directives(copy.deepcopy(val))
    return out


def _merge_list(orig: list, patch: list, key: str) -> list:
    out = copy.deepcopy(orig)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise _BadPatch(f"strategic merge patch: list item without merge key {key!r}")
        idx = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
        elif idx is None:
            out.append(_strip_directives(copy.deepcopy(item)))
        else:
            out[idx] = strategic_merge(out[idx], item)
    return out


def _strip_directives(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_directives(x) for k, x in v.items() if not k.startswith("$") and x is not None}
    if isinstance(v, list):
        return [_strip_directives(x) for x in v]
    return v


def merge_patch(orig: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(orig) if isinstance(orig, dict) else {}
    for key, val in patch.items():
        if val is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), val)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _BadPatch(f"json patch: bad path {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, test, copy, move."""
    if not isinstance(ops, list):
        raise _BadPatch("json patch: the body must be a list of operations")
    doc = copy.deepcopy(doc)

    def parent(path: str) -> tuple[Any, str]:
        parts = _pointer(path)
        if not parts:
            raise _BadPatch("json patch: cannot operate on the whole document")
        cur = doc
        for p in parts[:-1]:
            try:
                cur = cur[int(p)] if isinstance(cur, list) else cur[p]
            except (KeyError, IndexError, ValueError, TypeError):
                raise _BadPatch(f"json patch: path {path!r} does not exist") from None
        return cur, parts[-1]

    def get(path: str) -> Any:
        cur, last = parent(path)
        try:
            return cur[int(last)] if isinstance(cur, list) else cur[last]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _BadPatch(f"json patch: path {path!r} does not exist") from None

    def remove(path: str) -> Any:
        cur, last = parent(path)
        try:
            return cur.pop(int(last)) if isinstance(cur, list) else cur.pop(last)
        except (KeyError, IndexError, ValueError):
            raise _BadPatch(f"json patch: path {path!r} does not exist") from None

    def add(path: str, value: Any, replace: bool = False) -> None:
        cur, last = parent(path)
        if isinstance(cur, list):
            if last == "-":
                cur.append(value)
            elif replace:
                cur[int(last)] = value
            else:
                cur.insert(int(last), value)
        elif isinstance(cur, dict):
            if replace and last not in cur:
                raise _BadPatch(f"json patch: replace of missing path {path!r}")
            cur[last] = value
        else:
            raise _BadPatch(f"json patch: path {path!r} has no container")

    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _BadPatch("json patch: each operation needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if kind == "add":
            add(path, copy.deepcopy(op.get("value")))
        elif kind == "replace":
            add(path, copy.deepcopy(op.get("value")), replace=True)
        elif kind == "remove":
            remove(path)
        elif kind == "test":
            if get(path) != op.get("value"):
                raise _BadPatch(f"json patch: test failed at {path!r}")
        elif kind == "copy":
            add(path, copy.deepcopy(get(op["from"])))
        elif kind == "move":
            add(path, remove(op["from"]))
        else:
            raise _BadPatch(f"json patch: unknown op {kind!r}")
    return doc


# --------------------------------------------------------------------------- errors

class _APIError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def body(self) -> dict:
        return _ser(k8s.V1Status(
            api_version="v1", kind="Status", metadata=k8s.V1ListMeta(), status="Failure",
            message=self.message, reason=self.reason, code=self.code,
            details=k8s.V1StatusDetails(**self.details) if self.details else None,
        ))


def _not_found(resource: str, group: str, name: str) -> _APIError:
    full = f"{resource}.{group}" if group else resource
    return _APIError(404, "NotFound", f'{full} "{name}" not found',
                     {"name": name, "group": group or None, "kind": resource})


# --------------------------------------------------------------------------- server

class KubeAPIServer:
    """A stateful stand-in for the Kubernetes API server (see the module docstring)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 restart_interval: float = 10.0):
        self.host, self.port = host, port
        self.token = token or secrets.token_hex(16)
        self.restart_interval = restart_interval  # seconds per crash-loop restart
        self.url: str | None = None
        self.requests: list[tuple[str, str, str]] = []  # (method, path+query, content-type)
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._rv = itertools.count(1000)
        self._deployments: dict[tuple[str, str], dict] = {}
        self._replicasets: dict[tuple[str, str], dict] = {}
        self._pods: dict[tuple[str, str], dict] = {}      # serialized pod without status
        self._pod_born: dict[tuple[str, str], float] = {}  # monotonic start, for restart counts
        self._events: dict[str, list[dict]] = {}
        self._behaviours: dict[str, str] = {}
        self._logs: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        if self._httpd is not None:
            return self.url  # type: ignore[return-value]
        server = self

        class Handler(_Handler):
            api = server

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kube-api-sandbox",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> "KubeAPIServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def write_kubeconfig(self, path: str | Path, context: str = "sandbox", namespace: str = "default",
                         token: str | None = None) -> Path:
        """Write a kubeconfig pointing at this server (plain http, bearer token); return its path."""
        if self.url is None:
            raise RuntimeError("start() the server first")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": context, "cluster": {"server": self.url, "insecure-skip-tls-verify": True}}],
            "users": [{"name": f"{context}-user", "user": {"token": token if token is not None else self.token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-user",
                                                       "namespace": namespace}}],
            "current-context": context,
        }
        path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML: the client's loader reads it
        return path

    # ------------------------------------------------------------ fault injection

    def set_image_behaviour(self, image: str, behaviour: str, logs: list[str] | None = None) -> None:
        """Decide what pods running ``image`` do: one of :data:`BEHAVIOURS` (default ``ok``)."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; expected one of {BEHAVIOURS}")
        with self._lock:
            self._behaviours[image] = behaviour
            if logs is not None:
                self._logs[image] = list(logs)
            self._bump_all()

    def set_image_logs(self, image: str, lines: list[str]) -> None:
        with self._lock:
            self._logs[image] = list(lines)

    def behaviour(self, image: str) -> str:
        with self._lock:
            return self._behaviours.get(image, "ok")

    # ----------------------------------------------------------------- seeding

    def create_deployment(self, namespace: str, name: str, image: str, replicas: int = 1,
                          env: dict[str, Any] | None = None, labels: dict[str, str] | None = None,
                          container_name: str | None = None) -> dict:
        """Seed a Deployment (revision 1) with its ReplicaSet and pods; return the deployment JSON.

        ``env`` values are strings, or a ``V1EnvVarSource`` / its JSON dict for ``valueFrom``.
        """
        labels = dict(labels or {"app": name})
        env_vars = []
        for k, v in (env or {}).items():
            if isinstance(v, k8s.V1EnvVarSource):
                env_vars.append(k8s.V1EnvVar(name=k, value_from=v))
            elif isinstance(v, dict):
                env_vars.append(k8s.V1EnvVar(name=k, value_from=_model(v, "V1EnvVarSource")))
            else:
                env_vars.append(k8s.V1EnvVar(name=k, value=str(v)))
        dep = k8s.V1Deployment(
            api_version="apps/v1", kind="Deployment",
            metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels=dict(labels),
                                      annotations={}, uid=str(uuid.uuid4()), generation=1,
                                      creation_timestamp=_now()),
            spec=k8s.V1DeploymentSpec(
                replicas=replicas, revision_history_limit=10, progress_deadline_seconds=600,
                selector=k8s.V1LabelSelector(match_labels=dict(labels)),
                strategy=k8s.V1DeploymentStrategy(
                    type="RollingUpdate",
                    rolling_update=k8s.V1RollingUpdateDeployment(max_surge="25%", max_unavailable="25%")),
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(labels=dict(labels)),
                    spec=k8s.V1PodSpec(
                        containers=[k8s.V1Container(
                            name=container_name or name.split(".")[0], image=image,
                            image_pull_policy="IfNotPresent", env=env_vars or None,
                            ports=[k8s.V1ContainerPort(container_port=8000, protocol="TCP")],
                            termination_message_path="/dev/termination-log",
                            termination_message_policy="File")],
                        restart_policy="Always", termination_grace_period_seconds=30,
                        dns_policy="ClusterFirst", scheduler_name="default-scheduler"),
                ),
            ),
        )
        with self._lock:
            if (namespace, name) in self._deployments:
                raise ValueError(f"deployment {namespace}/{name} exists")
            obj = _ser(dep)
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            self._deployments[(namespace, name)] = obj
            self._reconcile(namespace, name)
            return copy.deepcopy(self._deployments[(namespace, name)])

    # ------------------------------------------------------- read helpers (tests)

    def get_deployment(self, namespace: str, name: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._read_deployment(namespace, name))

    def list_pods(self, namespace: str, selector: str | None = None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(p) for p in self._list_pods(namespace, selector)]

    def list_replicasets(self, namespace: str, selector: str | None = None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._list_rs(namespace, selector)]

    # ----------------------------------------------------------------- controller

    def _bump_all(self) -> None:
        for p in self._pods.values():
            p["metadata"]["resourceVersion"] = str(next(self._rv))

    def _owned(self, store: dict, namespace: str, uid: str) -> list[dict]:
        return [o for (ns, _), o in store.items() if ns == namespace
                and any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]

    def _event(self, namespace: str, obj: dict, type_: str, reason: str, component: str,
               message: str | None) -> None:
        md = obj["metadata"]
        now = _now()
        ev = k8s.CoreV1Event(
            api_version="v1", kind="Event",
            metadata=k8s.V1ObjectMeta(name=f"{md['name']}.{secrets.token_hex(8)}", namespace=namespace,
                                      uid=str(uuid.uuid4()), resource_version=str(next(self._rv)),
                                      creation_timestamp=now),
            involved_object=k8s.V1ObjectReference(
                api_version=obj.get("apiVersion"), kind=obj.get("kind"), name=md["name"],
                namespace=namespace, uid=md.get("uid")),
            reason=reason, message=message or reason, type=type_, count=1,
            first_timestamp=now, last_timestamp=now, source=k8s.V1EventSource(component=component),
            reporting_component=component,
        )
        self._events.setdefault(namespace, []).append(_ser(ev))

    def _reconcile(self, namespace: str, name: str) -> None:
        """The deployment controller: make the ReplicaSets and pods match the deployment."""
        dep = self._deployments[(namespace, name)]
        uid = dep["metadata"]["uid"]
        template = dep["spec"]["template"]
        key = _template_key(template)
        owned = self._owned(self._replicasets, namespace, uid)
        max_rev = max((_revision(rs) for rs in owned), default=0)
        current = next((rs for rs in owned if _template_key(rs["spec"]["template"]) == key), None)
        desired = int(dep["spec"].get("replicas", 1) if dep["spec"].get("replicas") is not None else 1)
        if current is None:
            current = self._new_replicaset(namespace, dep, max_rev + 1)
            self._event(namespace, dep, "Normal", "ScalingReplicaSet", "deployment-controller",
                        f"Scaled up replica set {current['metadata']['name']} from 0 to {desired}")
        elif _revision(current) != max_rev or max_rev == 0:
            # rollback: the matching old ReplicaSet becomes the newest revision, as Kubernetes does
            ann = current["metadata"].setdefault("annotations", {})
            old = ann.get(REVISION_ANNOTATION)
            history = [h for h in (ann.get(REVISION_HISTORY_ANNOTATION) or "").split(",") if h]
            if old:
                history.append(old)
            ann[REVISION_ANNOTATION] = str(max_rev + 1)
            if history:
                ann[REVISION_HISTORY_ANNOTATION] = ",".join(history)
            self._event(namespace, dep, "Normal", "ScalingReplicaSet", "deployment-controller",
                        f"Scaled up replica set {current['metadata']['name']} from "
                        f"{current['spec'].get('replicas', 0)} to {desired}")
        dep_ann = dep["metadata"].setdefault("annotations", {})
        if dep_ann.get(REVISION_ANNOTATION) != current["metadata"]["annotations"][REVISION_ANNOTATION]:
            dep_ann[REVISION_ANNOTATION] = current["metadata"]["annotations"][REVISION_ANNOTATION]
            dep["metadata"]["resourceVersion"] = str(next(self._rv))
        for rs in self._owned(self._replicasets, namespace, uid):
            want = desired if rs is current else 0
            if rs is not current and rs["spec"].get("replicas", 0) > 0:
                self._event(namespace, dep, "Normal", "ScalingReplicaSet", "deployment-controller",
                            f"Scaled down replica set {rs['metadata']['name']} from "
                            f"{rs['spec']['replicas']} to 0")
            if rs["spec"].get("replicas") != want:
                rs["spec"]["replicas"] = want
                rs["metadata"]["generation"] = rs["metadata"].get("generation", 1) + 1
                rs["metadata"]["resourceVersion"] = str(next(self._rv))
            if rs is current:
                rs["metadata"]["annotations"][DESIRED_REPLICAS_ANNOTATION] = str(desired)
                rs["metadata"]["annotations"][MAX_REPLICAS_ANNOTATION] = str(desired + max(1, -(-desired // 4)))
            self._reconcile_pods(namespace, rs)
        self._prune_history(namespace, dep)

    def _prune_history(self, namespace: str, dep: dict) -> None:
        limit = dep["spec"].get("revisionHistoryLimit", 10)
        old = sorted((rs for rs in self._owned(self._replicasets, namespace, dep["metadata"]["uid"])
                      if rs["spec"].get("replicas", 0) == 0
                      and _revision(rs) != _revision(dep)), key=_revision)
        for rs in old[: max(0, len(old) - limit)]:
            self._replicasets.pop((namespace, rs["metadata"]["name"]), None)

    def _new_replicaset(self, namespace: str, dep: dict, revision: int) -> dict:
        template = copy.deepcopy(dep["spec"]["template"])
        collisions = 0
        while True:
            h = _template_hash(template, collisions)
            rs_name = f"{dep['metadata']['name']}-{h}"
            if (namespace, rs_name) not in self._replicasets:
                break
            collisions += 1
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        selector = copy.deepcopy(dep["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = h
        labels = dict(template["metadata"]["labels"])
        body = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name, "namespace": namespace, "labels": labels, "uid": str(uuid.uuid4()),
                "generation": 1, "resourceVersion": str(next(self._rv)),
                "creationTimestamp": _ser(_now()),
                "annotations": {REVISION_ANNOTATION: str(revision)},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": dep["metadata"]["name"], "uid": dep["metadata"]["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }
        rs = _normalize(body, "V1ReplicaSet")  # built and validated by the client's V1ReplicaSet
        self._replicasets[(namespace, rs_name)] = rs
        return rs

    def _reconcile_pods(self, namespace: str, rs: dict) -> None:
        uid = rs["metadata"]["uid"]
        pods = sorted(self._owned(self._pods, namespace, uid),
                      key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
        want = rs["spec"].get("replicas", 0)
        while len(pods) > want:
            p = pods.pop()
            self._pods.pop((namespace, p["metadata"]["name"]), None)
            self._pod_born.pop((namespace, p["metadata"]["name"]), None)
        for _ in range(want - len(pods)):
            self._new_pod(namespace, rs)

    def _new_pod(self, namespace: str, rs: dict) -> dict:
        template = rs["spec"]["template"]
        while True:
            name = f"{rs['metadata']['name']}-{_rand_suffix()}"
            if (namespace, name) not in self._pods:
                break
        meta = copy.deepcopy(template.get("metadata") or {})
        spec = copy.deepcopy(template["spec"])
        spec.setdefault("nodeName", "sandbox-node")
        spec.setdefault("serviceAccountName", "default")
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                **meta, "name": name, "generateName": rs["metadata"]["name"] + "-", "namespace": namespace,
                "uid": str(uuid.uuid4()), "resourceVersion": str(next(self._rv)),
                "creationTimestamp": _ser(_now()),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                     "name": rs["metadata"]["name"], "uid": rs["metadata"]["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": spec,
        }
        pod = _normalize(body, "V1Pod")
        self._pods[(namespace, name)] = pod
        self._pod_born[(namespace, name)] = time.monotonic()
        self._event(namespace, pod, "Normal", "Scheduled", "default-scheduler",
                    f"Successfully assigned {namespace}/{name} to sandbox-node")
        for c in spec.get("containers", []):
            b = self._behaviours.get(c.get("image", ""), "ok")
            if b in ("pull-error", "err-image-pull"):
                self._event(namespace, pod, "Warning", "Failed", "kubelet",
                            f'Failed to pull image "{c["image"]}": rpc error: code = NotFound '
                            f'desc = failed to pull and unpack image "{c["image"]}": not found')
            elif b in ("crash", "oom"):
                self._event(namespace, pod, "Warning", "BackOff", "kubelet",
                            f"Back-off restarting failed container {c['name']} in pod {name}")
            else:
                self._event(namespace, pod, "Normal", "Started", "kubelet", f"Started container {c['name']}")
        return pod

    # ----------------------------------------------------------- status (kubelet)

    def _container_status(self, pod: dict, c: dict, born: float) -> k8s.V1ContainerStatus:
        image = c.get("image", "")
        b = self._behaviours.get(image, "ok")
        created = _dt.datetime.fromisoformat(pod["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        cid = "containerd://" + hashlib.sha256((pod["metadata"]["uid"] + c["name"]).encode()).hexdigest()
        image_id = f"docker.io/{image.split(':')[0]}@sha256:" + hashlib.sha256(image.encode()).hexdigest()
        if b == "ok":
            return k8s.V1ContainerStatus(
                name=c["name"], image=image, image_id=image_id, container_id=cid, ready=True, started=True,
                restart_count=0, state=k8s.V1ContainerState(running=k8s.V1ContainerStateRunning(started_at=created)))
        if b in ("pull-error", "err-image-pull"):
            reason = "ImagePullBackOff" if b == "pull-error" else "ErrImagePull"
            msg = (f'Back-off pulling image "{image}"' if b == "pull-error" else
                   f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found')
            return k8s.V1ContainerStatus(
                name=c["name"], image=image, image_id="", ready=False, started=False, restart_count=0,
                state=k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason=reason, message=msg)))
        # crash / oom: crash-looping, restarts growing with time
        restarts = 1 + int((time.monotonic() - born) / max(self.restart_interval, 0.001))
        backoff = min(300, 10 * 2 ** min(restarts - 1, 5))
        now = _now()
        term = k8s.V1ContainerStateTerminated(
            exit_code=137 if b == "oom" else 1, reason="OOMKilled" if b == "oom" else "Error",
            started_at=now - _dt.timedelta(seconds=2), finished_at=now - _dt.timedelta(seconds=1),
            container_id=cid)
        return k8s.V1ContainerStatus(
            name=c["name"], image=image, image_id=image_id, container_id=cid, ready=False, started=False,
            restart_count=restarts, last_state=k8s.V1ContainerState(terminated=term),
            state=k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(
                reason="CrashLoopBackOff",
                message=f"back-off {backoff}s restarting failed container={c['name']} "
                        f"pod={pod['metadata']['name']}_{pod['metadata']['namespace']}({pod['metadata']['uid']})")))

    def _render_pod(self, key: tuple[str, str]) -> dict:
        pod = copy.deepcopy(self._pods[key])
        born = self._pod_born.get(key, time.monotonic())
        statuses = [self._container_status(pod, c, born) for c in pod["spec"].get("containers", [])]
        ready = all(s.ready for s in statuses)
        pending = any(s.state.waiting and s.state.waiting.reason in ("ImagePullBackOff", "ErrImagePull")
                      for s in statuses)
        created = _dt.datetime.fromisoformat(pod["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        not_ready = None if ready else "ContainersNotReady"
        names = ", ".join(s.name for s in statuses if not s.ready)
        cond = lambda t, ok: k8s.V1PodCondition(  # noqa: E731
            type=t, status="True" if ok else "False", last_transition_time=created,
            reason=None if ok else not_ready,
            message=None if ok else f"containers with unready status: [{names}]")
        status = k8s.V1PodStatus(
            phase="Pending" if pending else "Running", host_ip="10.0.0.10",
            pod_ip="10.244.0." + str(int(hashlib.sha256(key[1].encode()).hexdigest(), 16) % 250 + 2),
            start_time=created, qos_class="BestEffort", container_statuses=statuses,
            conditions=[cond("Initialized", True), cond("Ready", ready), cond("ContainersReady", ready),
                        cond("PodScheduled", True)])
        pod["status"] = _ser(status)
        return pod

    def _pod_ready(self, key: tuple[str, str]) -> bool:
        return all(s.get("ready") for s in self._render_pod(key)["status"].get("containerStatuses", []))

    def _read_rs(self, namespace: str, name: str) -> dict:
        rs = self._replicasets.get((namespace, name))
        if rs is None:
            raise _not_found("replicasets", "apps", name)
        keys = [(namespace, p["metadata"]["name"]) for p in self._owned(self._pods, namespace, rs["metadata"]["uid"])]
        ready = sum(1 for k in keys if self._pod_ready(k))
        status = k8s.V1ReplicaSetStatus(
            replicas=len(keys), fully_labeled_replicas=len(keys), ready_replicas=ready or None,
            available_replicas=ready or None, observed_generation=rs["metadata"].get("generation", 1))
        out = copy.deepcopy(rs)
        out["status"] = _ser(status)
        return out

    def _read_deployment(self, namespace: str, name: str) -> dict:
        dep = self._deployments.get((namespace, name))
        if dep is None:
            raise _not_found("deployments", "apps", name)
        out = copy.deepcopy(dep)
        desired = dep["spec"].get("replicas", 1)
        rss = [self._read_rs(namespace, rs["metadata"]["name"])
               for rs in self._owned(self._replicasets, namespace, dep["metadata"]["uid"])]
        current = next((rs for rs in rss if _revision(rs) == _revision(dep)), None)
        total = sum(rs["status"].get("replicas", 0) for rs in rss)
        ready = sum(rs["status"].get("readyReplicas", 0) for rs in rss)
        updated = current["status"].get("replicas", 0) if current else 0
        cur_ready = current["status"].get("readyReplicas", 0) if current else 0
        now = _now()
        rs_name = current["metadata"]["name"] if current else "?"
        available = ready >= desired
        progressed = updated == desired and cur_ready == desired
        status = k8s.V1DeploymentStatus(
            observed_generation=dep["metadata"].get("generation", 1),
            replicas=total or None, updated_replicas=updated or None, ready_replicas=ready or None,
            available_replicas=ready or None, unavailable_replicas=(max(0, desired - ready) or None),
            conditions=[
                k8s.V1DeploymentCondition(
                    type="Available", status="True" if available else "False",
                    reason="MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                    message="Deployment has minimum availability." if available
                    else "Deployment does not have minimum availability.",
                    last_update_time=now, last_transition_time=now),
                k8s.V1DeploymentCondition(
                    type="Progressing", status="True",
                    reason="NewReplicaSetAvailable" if progressed else "ReplicaSetUpdated",
                    message=f'ReplicaSet "{rs_name}" has successfully progressed.' if progressed
                    else f'ReplicaSet "{rs_name}" is progressing.',
                    last_update_time=now, last_transition_time=now),
            ],
        )
        out["status"] = _ser(status)
        return out

    def _list_pods(self, namespace: str, selector: str | None) -> list[dict]:
        match = parse_label_selector(selector)
        return [self._render_pod(k) for k, p in sorted(self._pods.items())
                if k[0] == namespace and match(p["metadata"].get("labels") or {})]

    def _list_rs(self, namespace: str, selector: str | None) -> list[dict]:
        match = parse_label_selector(selector)
        return [self._read_rs(ns, n) for (ns, n), rs in sorted(self._replicasets.items())
                if ns == namespace and match(rs["metadata"].get("labels") or {})]

    def _scale_obj(self, namespace: str, name: str) -> dict:
        dep = self._read_deployment(namespace, name)
        md = dep["metadata"]
        return _ser(k8s.V1Scale(
            api_version="autoscaling/v1", kind="Scale",
            metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, uid=md["uid"],
                                      resource_version=md["resourceVersion"],
                                      creation_timestamp=md["creationTimestamp"]),
            spec=k8s.V1ScaleSpec(replicas=dep["spec"].get("replicas", 1)),
            status=k8s.V1ScaleStatus(replicas=dep["status"].get("replicas", 0) or 0,
                                     selector=selector_string(dep["spec"]["selector"].get("matchLabels", {})))))

    # --------------------------------------------------------------- writes (API)

    def _apply_patch(self, obj: dict, body: Any, content_type: str) -> dict:
        ct = (content_type or "").split(";")[0].strip().lower()
        if ct == "application/strategic-merge-patch+json":
            if not isinstance(body, dict):
                raise _BadPatch("strategic merge patch: the body must be a JSON object")
            return strategic_merge(obj, body)
        if ct == "application/merge-patch+json":
            return merge_patch(obj, body)
        if ct == "application/json-patch+json":
            return json_patch(obj, body)
        raise _APIError(415, "UnsupportedMediaType",
                        f"the body of the request was in an unknown format - accepted media types "
                        f"include: application/json-patch+json, application/merge-patch+json, "
                        f"application/strategic-merge-patch+json (got {content_type!r})")

    def _store_deployment(self, namespace: str, name: str, new: dict) -> dict:
        old = self._deployments[(namespace, name)]
        md = new.setdefault("metadata", {})
        if md.get("name", name) != name:
            raise _APIError(422, "Invalid", f'Deployment.apps "{name}" is invalid: metadata.name: '
                                            f"Invalid value: {md.get('name')!r}: field is immutable")
        # immutable / server-owned fields
        for k in ("uid", "creationTimestamp", "namespace", "name", "generation"):
            md[k] = old["metadata"].get(k)
        if (new.get("spec") or {}).get("selector") != old["spec"]["selector"]:
            raise _APIError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.selector: '
                                            f"Invalid value: field is immutable")
        new.pop("status", None)
        new["apiVersion"], new["kind"] = "apps/v1", "Deployment"
        try:
            new = _normalize(new, "V1Deployment")
        except Exception as exc:  # pydantic ValidationError and friends
            raise _APIError(422, "Invalid", f'Deployment.apps "{name}" is invalid: '
                                            f"{str(exc).splitlines()[0]}") from None
        tmpl_labels = ((new["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not parse_label_selector(selector_string(new["spec"]["selector"].get("matchLabels", {})))(tmpl_labels):
            raise _APIError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.template.metadata.labels: '
                                            f"Invalid value: `selector` does not match template `labels`")
        if new["spec"].get("replicas", 1) < 0:
            raise _APIError(422, "Invalid", f'Deployment.apps "{name}" is invalid: spec.replicas: '
                                            f"Invalid value: must be greater than or equal to 0")
        # the revision annotation belongs to the controller: keep it
        ann = new["metadata"].setdefault("annotations", {})
        ann[REVISION_ANNOTATION] = old["metadata"]["annotations"].get(REVISION_ANNOTATION, "1")
        if new["spec"] != old["spec"]:
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if new != old:
            new["metadata"]["resourceVersion"] = str(next(self._rv))
        else:
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        self._deployments[(namespace, name)] = new
        self._reconcile(namespace, name)
        return self._read_deployment(namespace, name)

    def _check_rv(self, body: Any, current_rv: str, what: str, name: str) -> None:
        rv = ((body or {}).get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        if rv and rv != current_rv:
            raise _APIError(409, "Conflict", f'Operation cannot be fulfilled on {what} "{name}": the object '
                                             f"has been modified; please apply your changes to the latest "
                                             f"version and try again")

    # ---------------------------------------------------------------- routing

    _ROUTES: list[tuple[re.Pattern, str]] = [
        (re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)/scale$"), "scale"),
        (re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)$"), "deployment"),
        (re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments$"), "deployments"),
        (re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/replicasets/([^/]+)$"), "replicaset"),
        (re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/replicasets$"), "replicasets"),
        (re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$"), "log"),
        (re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)$"), "pod"),
        (re.compile(r"^/api/v1/namespaces/([^/]+)/pods$"), "pods"),
        (re.compile(r"^/api/v1/namespaces/([^/]+)/events$"), "events"),
        (re.compile(r"^/version/?$"), "version"),
    ]

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> tuple[int, str, bytes]:
        """Serve one request; returns (status, content type, body)."""
        self.requests.append((method, path + ("?" + "&".join(f"{k}={v[0]}" for k, v in query.items())
                                              if query else ""), headers.get("Content-Type", "")))
        auth = headers.get("Authorization", "")
        if auth != f"Bearer {self.token}":
            raise _APIError(401, "Unauthorized", "Unauthorized")
        q = {k: v[-1] for k, v in query.items()}
        for pattern, route in self._ROUTES:
            m = pattern.match(path)
            if m:
                args = [unquote(g) for g in m.groups()]
                break
        else:
            raise _APIError(404, "NotFound", "the server could not find the requested resource")
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError as exc:
                raise _APIError(400, "BadRequest", f"the request body is not JSON: {exc}") from None
        with self._lock:
            return self._dispatch(method, route, args, q, headers.get("Content-Type", ""), payload)

    def _dispatch(self, method: str, route: str, args: list[str], q: dict[str, str], ctype: str,
                  payload: Any) -> tuple[int, str, bytes]:
        def ok(obj: Any, code: int = 200) -> tuple[int, str, bytes]:
            return code, "application/json", json.dumps(obj).encode()

        def not_allowed() -> _APIError:
            return _APIError(405, "MethodNotAllowed", "the server does not allow this method on the "
                                                      "requested resource")

        if route == "version":
            return ok({"major": "1", "minor": "31", "gitVersion": "v1.31.0-smartops-sandbox",
                       "platform": "linux/amd64"})
        ns = args[0]
        sel = q.get("labelSelector")
        if route == "deployments":
            if method != "GET":
                raise not_allowed()
            match = parse_label_selector(sel)
            items = [self._read_deployment(n, d) for (n, d), o in sorted(self._deployments.items())
                     if n == ns and match(o["metadata"].get("labels") or {})]
            lst = _ser(k8s.V1DeploymentList(api_version="apps/v1", kind="DeploymentList", items=[],
                                            metadata=k8s.V1ListMeta(resource_version=str(next(self._rv)))))
            lst["items"] = items
            return ok(lst)
        if route == "deployment":
            name = args[1]
            if method == "GET":
                return ok(self._read_deployment(ns, name))
            current = self._read_deployment(ns, name)
            if method == "PUT":
                if not isinstance(payload, dict):
                    raise _APIError(400, "BadRequest", "the body must be a Deployment")
                self._check_rv(payload, current["metadata"]["resourceVersion"], "deployments.apps", name)
                return ok(self._store_deployment(ns, name, copy.deepcopy(payload)))
            if method == "PATCH":
                base = copy.deepcopy(self._deployments[(ns, name)])
                try:
                    new = self._apply_patch(base, payload, ctype)
                except _BadPatch as exc:
                    raise _APIError(422 if "test failed" in str(exc) else 400, "BadRequest", str(exc)) from None
                self._check_rv(payload if isinstance(payload, dict) else None,
                               current["metadata"]["resourceVersion"], "deployments.apps", name)
                return ok(self._store_deployment(ns, name, new))
            raise not_allowed()
        if route == "scale":
            name = args[1]
            scale = self._scale_obj(ns, name)
            if method == "GET":
                return ok(scale)
            if method == "PUT":
                new = payload if isinstance(payload, dict) else {}
                self._check_rv(new, scale["metadata"]["resourceVersion"], "deployments.apps", name)
            elif method == "PATCH":
                try:
                    new = self._apply_patch(scale, payload, ctype)
                except _BadPatch as exc:
                    raise _APIError(400, "BadRequest", str(exc)) from None
            else:
                raise not_allowed()
            replicas = (new.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise _APIError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                                                f"Invalid value: {replicas!r}: must be a non-negative integer")
            dep = copy.deepcopy(self._deployments[(ns, name)])
            before = dep["spec"].get("replicas", 1)
            dep["spec"]["replicas"] = replicas
            self._store_deployment(ns, name, dep)
            if before != replicas:
                self._event(ns, dep, "Normal", "ScalingReplicaSet", "deployment-controller",
                            f"Scaled deployment {name} from {before} to {replicas}")
            return ok(self._scale_obj(ns, name))
        if route in ("replicasets", "pods", "events"):
            if method != "GET":
                raise not_allowed()
            if route == "replicasets":
                lst = _ser(k8s.V1ReplicaSetList(api_version="apps/v1", kind="ReplicaSetList", items=[],
                                                metadata=k8s.V1ListMeta(resource_version=str(next(self._rv)))))
                lst["items"] = self._list_rs(ns, sel)
            elif route == "pods":
                lst = _ser(k8s.V1PodList(api_version="v1", kind="PodList", items=[],
                                         metadata=k8s.V1ListMeta(resource_version=str(next(self._rv)))))
                lst["items"] = self._list_pods(ns, sel)
            else:
                lst = _ser(k8s.CoreV1EventList(api_version="v1", kind="EventList", items=[],
                                               metadata=k8s.V1ListMeta(resource_version=str(next(self._rv)))))
                lst["items"] = copy.deepcopy(self._events.get(ns, []))
            return ok(lst)
        if route == "replicaset":
            if method != "GET":
                raise not_allowed()
            return ok(self._read_rs(ns, args[1]))
        if route == "pod":
            key = (ns, args[1])
            if key not in self._pods:
                raise _not_found("pods", "", args[1])
            if method == "GET":
                return ok(self._render_pod(key))
            if method == "DELETE":
                pod = self._render_pod(key)
                del self._pods[key]
                self._pod_born.pop(key, None)
                for ref in pod["metadata"].get("ownerReferences") or []:  # the ReplicaSet replaces it
                    rs = next((r for r in self._replicasets.values() if r["metadata"]["uid"] == ref["uid"]), None)
                    if rs is not None:
                        self._reconcile_pods(ns, rs)
                return ok(pod)
            raise not_allowed()
        if route == "log":
            if method != "GET":
                raise not_allowed()
            key = (ns, args[1])
            if key not in self._pods:
                raise _not_found("pods", "", args[1])
            pod = self._render_pod(key)
            containers = pod["spec"]["containers"]
            cname = q.get("container") or containers[0]["name"]
            if q.get("container") is None and len(containers) > 1:
                raise _APIError(400, "BadRequest", f"a container name must be specified for pod {args[1]}, "
                                                   f"choose one of: {[c['name'] for c in containers]}")
            c = next((c for c in containers if c["name"] == cname), None)
            if c is None:
                raise _APIError(400, "BadRequest", f"container {cname} is not valid for pod {args[1]}")
            b = self._behaviours.get(c["image"], "ok")
            if b in ("pull-error", "err-image-pull"):
                raise _APIError(400, "BadRequest", f'container "{cname}" in pod "{args[1]}" is waiting to '
                                                   f"start: trying and failing to pull image")
            if q.get("previous") in ("true", "True", "1") and b == "ok":
                raise _APIError(400, "BadRequest", f'previous terminated container "{cname}" in pod '
                                                   f'"{args[1]}" not found')
            lines = self._logs.get(c["image"], _DEFAULT_LOGS.get(b, []))
            if "tailLines" in q:
                try:
                    n = int(q["tailLines"])
                except ValueError:
                    raise _APIError(400, "BadRequest", "tailLines must be an integer") from None
                lines = lines[-n:] if n > 0 else []
            text = "".join(line + "\n" for line in lines)
            return 200, "text/plain", text.encode()
        raise _APIError(404, "NotFound", "the server could not find the requested resource")


class _Handler(BaseHTTPRequestHandler):
    api: KubeAPIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            code, ctype, out = self.api.handle(method, parts.path, parse_qs(parts.query), self.headers, body)
        except _APIError as exc:
            code, ctype, out = exc.code, "application/json", json.dumps(exc.body()).encode()
        except Exception as exc:  # a bug in the stand-in: answer like the real server would
            err = _APIError(500, "InternalError", f"sandbox error: {type(exc).__name__}: {exc}")
            code, ctype, out = 500, "application/json", json.dumps(err.body()).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")
