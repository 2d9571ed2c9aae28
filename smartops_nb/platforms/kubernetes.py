"""The Kubernetes driver: a workload is a Deployment, driven with the official ``kubernetes`` client.

Every write is what ``kubectl`` does for the same runbook step:

* :meth:`KubernetesPlatform.restart` = ``kubectl rollout restart`` (strategic-merge patch of the
  ``kubectl.kubernetes.io/restartedAt`` pod-template annotation);
* :meth:`KubernetesPlatform.scale` = ``kubectl scale`` (the ``scale`` subresource);
* :meth:`KubernetesPlatform.rollback` = ``kubectl rollout undo`` (JSON patch of ``spec.template``
  from the ReplicaSet of the previous revision, without its ``pod-template-hash`` label, and of
  the deployment annotations).

Configuration is loaded lazily from ``config_file`` or ``$KUBECONFIG`` (else ``~/.kube/config``,
else the in-cluster service account). Every call carries a ``_request_timeout``; an unreachable or
refusing API server raises :class:`PlatformError` with a one-line reason.
"""
from __future__ import annotations

import datetime as _dt
import os
import threading
from typing import Any, Callable

from smartops_nb.support.reasons import flat

from .base import ImageRevision, Platform, PlatformError, Release, WorkloadState

LINE_LIMIT = 300   # an API message in an error or a pod's waiting reason

__all__ = ["KubernetesPlatform"]

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
HASH_LABEL = "pod-template-hash"
# annotations `kubectl rollout undo` does not copy from the ReplicaSet to the deployment
_ANNOTATIONS_TO_SKIP = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
}
# a container waiting for one of these cannot get its image (kubelet's image-pull reasons)
PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
# worst first: the status reported for a deployment is the worst of its pods' reasons
_SEVERITY = [
    *PULL_REASONS,
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
    "OOMKilled", "CrashLoopBackOff", "Error", "Evicted", "ContainerStatusUnknown",
    "ContainerCreating", "PodInitializing", "Pending", "Terminating", "Completed", "Running",
]


def _rank(reason: str) -> int:
    return _SEVERITY.index(reason) if reason in _SEVERITY else len(_SEVERITY) // 2


def _iso(ts: Any) -> str | None:
    if ts is None:
        return None
    if isinstance(ts, _dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=_dt.timezone.utc)
        return ts.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return str(ts)


class KubernetesPlatform(Platform):
    """restart / scale / logs / state / image history / rollback of Deployments in one namespace."""

    name = "kubernetes"

    def __init__(self, context: str | None = None, namespace: str = "default",
                 config_file: str | os.PathLike | None = None, request_timeout: float = 5.0):
        self.context = context
        self.namespace = namespace or "default"
        self.config_file = os.fspath(config_file) if config_file else None
        self.request_timeout = request_timeout
        self._api_client: Any = None
        self._apps: Any = None
        self._core: Any = None
        self._lock = threading.Lock()

    # --------------------------------------------------------------- plumbing

    def _connect(self) -> None:
        with self._lock:
            if self._api_client is not None:
                return
            try:
                from kubernetes import client, config
            except ImportError as exc:  # pragma: no cover - the client is a dependency
                raise PlatformError(f"the kubernetes client is not installed: {exc}") from None
            path = self.config_file or os.environ.get("KUBECONFIG") or None
            if path and os.pathsep in path:
                path = next((p for p in path.split(os.pathsep) if p and os.path.exists(p)), None)
            try:
                from urllib3.util.retry import Retry

                cfg = client.Configuration()
                if path or os.path.exists(os.path.expanduser("~/.kube/config")) \
                        or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                    config.load_kube_config(config_file=path, context=self.context, client_configuration=cfg,
                                            persist_config=False)
                else:
                    config.load_incluster_config(client_configuration=cfg)
                # urllib3 would retry a timed-out read 3 times (4x the timeout): one quick connect
                # retry, no read retries, so a call never takes much longer than request_timeout.
                cfg.retries = Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0)
                api = client.ApiClient(cfg)
            except Exception as exc:  # ConfigException, FileNotFoundError, yaml errors
                where = path or "~/.kube/config"
                raise PlatformError(f"cannot load Kubernetes config from {where}"
                                    f"{' (context ' + self.context + ')' if self.context else ''}: "
                                    f"{flat(exc, LINE_LIMIT)}") from None
            self._api_client = api
            self._apps = client.AppsV1Api(api)
            self._core = client.CoreV1Api(api)

    @property
    def host(self) -> str:
        return getattr(getattr(self._api_client, "configuration", None), "host", "?")

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            err = PlatformError(f"{what}: HTTP {exc.status} {exc.reason or ''}".rstrip()
                                + f": {flat(self._api_message(exc), LINE_LIMIT)}")
            err.status = exc.status  # type: ignore[attr-defined]
            raise err from None
        except PlatformError:
            raise
        except Exception as exc:  # urllib3 MaxRetryError / timeouts / connection refused
            reason = getattr(exc, "reason", None) or exc
            raise PlatformError(f"{what}: Kubernetes API at {self.host} unreachable: "
                                f"{type(reason).__name__}: {flat(reason, 200)}") from None

    @staticmethod
    def _api_message(exc: Any) -> str:
        import json

        try:
            body = json.loads(exc.body)
            return body.get("message") or str(body)
        except Exception:
            return exc.body or exc.reason or ""

    def _deployment(self, name: str) -> Any:
        self._connect()
        try:
            return self._call(f"read deployment {self.namespace}/{name}",
                              self._apps.read_namespaced_deployment, name, self.namespace)
        except PlatformError as exc:
            if getattr(exc, "status", None) == 404:
                nf = PlatformError(f"deployment {name!r} not found in namespace {self.namespace!r}")
                nf.status = 404  # type: ignore[attr-defined]
                raise nf from None
            raise

    @staticmethod
    def _selector(dep: Any) -> str:
        sel = dep.spec.selector
        parts = [f"{k}={v}" for k, v in sorted((sel.match_labels or {}).items())]
        for e in sel.match_expressions or []:
            op = e.operator
            if op in ("In", "NotIn"):
                parts.append(f"{e.key} {op.lower()} ({','.join(e.values or [])})")
            elif op == "Exists":
                parts.append(e.key)
            elif op == "DoesNotExist":
                parts.append(f"!{e.key}")
        return ",".join(parts)

    @staticmethod
    def _revision_of(obj: Any) -> int:
        try:
            return int((obj.metadata.annotations or {}).get(REVISION_ANNOTATION, "0"))
        except ValueError:
            return 0

    def _pods(self, dep: Any) -> list[Any]:
        pods = self._call(f"list pods of {self.namespace}/{dep.metadata.name}",
                          self._core.list_namespaced_pod, self.namespace,
                          label_selector=self._selector(dep)).items
        return sorted(pods, key=lambda p: (_iso(p.metadata.creation_timestamp) or "", p.metadata.name))

    def _replicasets(self, dep: Any) -> list[Any]:
        """ReplicaSets controlled by the deployment, newest revision first."""
        rss = self._call(f"list replicasets of {self.namespace}/{dep.metadata.name}",
                         self._apps.list_namespaced_replica_set, self.namespace,
                         label_selector=self._selector(dep)).items
        owned = [rs for rs in rss if any(r.uid == dep.metadata.uid and r.controller
                                         for r in rs.metadata.owner_references or [])]
        return sorted(owned, key=self._revision_of, reverse=True)

    @staticmethod
    def _pod_reason(pod: Any) -> tuple[str, Any]:
        """(the pod's worst container reason, that container's status)."""
        st = pod.status
        if pod.metadata.deletion_timestamp is not None:
            return "Terminating", None
        if st is not None and st.reason:  # Evicted, ...
            return st.reason, None
        worst, worst_cs = (st.phase if st and st.phase else "Pending"), None
        for cs in (st.container_statuses or []) if st else []:
            state, reason = cs.state, None
            if state and state.waiting:
                reason = state.waiting.reason or "Waiting"
            elif state and state.terminated:
                reason = state.terminated.reason or ("Completed" if state.terminated.exit_code == 0 else "Error")
            elif state and state.running:
                reason = "Running" if cs.ready else "Running"
            last = cs.last_state.terminated if cs.last_state else None
            if reason == "CrashLoopBackOff" and last is not None and last.reason == "OOMKilled":
                reason = "OOMKilled"
            reason = reason or "Pending"
            if worst_cs is None or _rank(reason) < _rank(worst):
                worst, worst_cs = reason, cs
        return worst, worst_cs

    # ------------------------------------------------------------------ reads

    def state(self, workload: str) -> WorkloadState:
        try:
            dep = self._deployment(workload)
        except PlatformError as exc:
            if getattr(exc, "status", None) == 404:
                return WorkloadState(name=workload, exists=False, status="NotFound",
                                     detail={"namespace": self.namespace, "reason": str(exc)})
            raise
        pods = self._pods(dep)
        spec, st = dep.spec, dep.status
        containers = spec.template.spec.containers or []
        desired = spec.replicas if spec.replicas is not None else 1
        ready = (st.ready_replicas or 0) if st else 0
        pod_info, restarts, worst, worst_cs = [], 0, None, None
        oom, exit_code = False, None
        for pod in pods:
            reason, cs = self._pod_reason(pod)
            statuses = (pod.status.container_statuses or []) if pod.status else []
            pod_restarts = sum(c.restart_count or 0 for c in statuses)
            restarts += pod_restarts
            last_terms = [c.last_state.terminated for c in statuses if c.last_state and c.last_state.terminated]
            cur_terms = [c.state.terminated for c in statuses if c.state and c.state.terminated]
            if any(t.reason == "OOMKilled" for t in last_terms + cur_terms):
                oom = True
            if worst is None or _rank(reason) < _rank(worst):
                worst, worst_cs = reason, cs
            pod_info.append({
                "name": pod.metadata.name,
                "phase": pod.status.phase if pod.status else None,
                "reason": reason,
                "ready": bool(statuses) and all(c.ready for c in statuses),
                "restarts": pod_restarts,
                "revision_hash": (pod.metadata.labels or {}).get(HASH_LABEL),
                "node": pod.spec.node_name if pod.spec else None,
                "started_at": _iso(pod.status.start_time) if pod.status else None,
                "message": next((c.state.waiting.message for c in statuses
                                 if c.state and c.state.waiting and c.state.waiting.message), None),
                "last_terminated": [{"reason": t.reason, "exit_code": t.exit_code,
                                     "finished_at": _iso(t.finished_at)} for t in last_terms],
            })
        if worst_cs is not None:
            term = (worst_cs.last_state.terminated if worst_cs.last_state else None) \
                or (worst_cs.state.terminated if worst_cs.state else None)
            exit_code = term.exit_code if term is not None else None
        if exit_code is None:  # any pod's last exit is better than nothing
            exit_code = next((t["exit_code"] for p in pod_info for t in p["last_terminated"]), None)
        if worst is None:
            worst = "ScaledToZero" if desired == 0 else "NoPods"
        newest = pods[-1] if pods else None
        limit = None
        if containers and containers[0].resources and containers[0].resources.limits:
            mem = containers[0].resources.limits.get("memory")
            if mem:
                try:
                    from kubernetes.utils import parse_quantity

                    limit = int(parse_quantity(mem))
                except Exception:
                    limit = None
        return WorkloadState(
            name=workload, exists=True, running=ready > 0, status=worst, restarts=restarts,
            exit_code=exit_code, oom_killed=oom, memory_limit_bytes=limit,
            image=containers[0].image if containers else "",
            started_at=_iso(newest.status.start_time) if newest is not None and newest.status else None,
            replicas_desired=desired, replicas_ready=ready,
            detail={
                "namespace": self.namespace,
                "revision": (dep.metadata.annotations or {}).get(REVISION_ANNOTATION),
                "generation": dep.metadata.generation,
                "observed_generation": st.observed_generation if st else None,
                "updated_replicas": (st.updated_replicas or 0) if st else 0,
                "available_replicas": (st.available_replicas or 0) if st else 0,
                "unavailable_replicas": (st.unavailable_replicas or 0) if st else 0,
                "conditions": [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
                               for c in (st.conditions or [])] if st else [],
                "images": [c.image for c in containers],
                "pods": pod_info,
            },
        )

    def logs(self, workload: str, tail: int = 100) -> list[str]:
        dep = self._deployment(workload)
        pods = self._pods(dep)
        if not pods:
            return []
        current_hash = None
        rev = self._revision_of(dep)
        for rs in self._replicasets(dep):
            if self._revision_of(rs) == rev:
                current_hash = (rs.metadata.labels or {}).get(HASH_LABEL)
        current = [p for p in pods if (p.metadata.labels or {}).get(HASH_LABEL) == current_hash] or pods
        pod = current[-1]
        container = dep.spec.template.spec.containers[0].name
        what = f"logs of pod {self.namespace}/{pod.metadata.name}"
        try:
            text = self._pod_log(what, pod.metadata.name, container, tail)
        except PlatformError as exc:
            if getattr(exc, "status", None) == 400:  # waiting to start (image pull): no logs yet
                return []
            raise
        restarted = any((c.restart_count or 0) > 0 for c in (pod.status.container_statuses or [])) \
            if pod.status else False
        if not text and restarted:
            try:
                text = self._pod_log(what + " (previous)", pod.metadata.name, container, tail, previous=True)
            except PlatformError:
                text = ""
        return text.splitlines()

    def _pod_log(self, what: str, pod: str, container: str, tail: int, previous: bool = False) -> str:
        """A pod's log as text. Read raw (``_preload_content=False``): the client's own decoding of
        this plain-text answer differs between releases (kubernetes 36 returned ``"b'...'"``)."""
        resp = self._call(what, self._core.read_namespaced_pod_log, pod, self.namespace, container=container,
                          tail_lines=max(0, int(tail)), previous=previous, _preload_content=False)
        try:
            return resp.data.decode("utf-8", "replace")
        finally:
            resp.release_conn()

    def environment(self, workload: str) -> dict[str, str]:
        dep = self._deployment(workload)
        containers = dep.spec.template.spec.containers or []
        env: dict[str, str] = {}
        if not containers:
            return env
        c = containers[0]
        for src in c.env_from or []:
            if src.secret_ref is not None:
                env[f"{src.prefix or ''}*"] = f"<all keys from secret {src.secret_ref.name}>"
            elif src.config_map_ref is not None:
                env[f"{src.prefix or ''}*"] = f"<all keys from configmap {src.config_map_ref.name}>"
        for e in c.env or []:
            if e.value_from is None:
                env[e.name] = e.value if e.value is not None else ""
                continue
            vf = e.value_from
            if vf.secret_key_ref is not None:
                env[e.name] = f"<from secret {vf.secret_key_ref.name} key {vf.secret_key_ref.key}>"
            elif vf.config_map_key_ref is not None:
                env[e.name] = f"<from configmap {vf.config_map_key_ref.name} key {vf.config_map_key_ref.key}>"
            elif vf.field_ref is not None:
                env[e.name] = f"<from field {vf.field_ref.field_path}>"
            elif vf.resource_field_ref is not None:
                env[e.name] = f"<from resource {vf.resource_field_ref.resource}>"
            else:
                env[e.name] = "<from valueFrom>"
        return env

    def image_history(self, workload: str) -> list[ImageRevision]:
        dep = self._deployment(workload)
        current = self._revision_of(dep)
        out = []
        for rs in self._replicasets(dep):
            containers = rs.spec.template.spec.containers if rs.spec and rs.spec.template else []
            rev = self._revision_of(rs)
            out.append(ImageRevision(revision=str(rev), image=containers[0].image if containers else "",
                                     created_at=_iso(rs.metadata.creation_timestamp), current=rev == current))
        return out

    def release(self, workload: str, intended: str = "", window_s: float = 3600.0) -> Release:
        """The deployment's pod template image; unavailable when a pod's container for it waits
        with an image-pull reason (``ErrImagePull``, ``ImagePullBackOff``...), whose message is
        the error. The cluster's nodes do not list their images: ``engine_images`` stays empty."""
        dep = self._deployment(workload)
        containers = dep.spec.template.spec.containers or []
        image = containers[0].image if containers else intended
        pulling, running = [], 0
        for pod in self._pods(dep):
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                if cs.image != image:
                    continue
                waiting = cs.state.waiting if cs.state else None
                if waiting is not None and waiting.reason in PULL_REASONS:
                    pulling.append({"pod": pod.metadata.name, "reason": waiting.reason,
                                    "message": flat(waiting.message or "", LINE_LIMIT)})
                elif cs.state and cs.state.running:
                    running += 1
        error = next((f"{p['reason']}: {p['message']}" if p["message"] else p["reason"] for p in pulling), "")
        return Release(image=image, source=f"deployment {self.namespace}/{workload}: spec.template (containers[0])",
                       available=False if pulling else (True if running else None), error=error,
                       detail={"pods_pulling": pulling, "containers_running": running})

    # ----------------------------------------------------------------- writes

    def restart(self, workload: str) -> dict[str, Any]:
        dep = self._deployment(workload)
        now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}}}}
        self._call(f"restart deployment {self.namespace}/{workload}",
                   self._apps.patch_namespaced_deployment, workload, self.namespace, patch)
        after = self._deployment(workload)
        return {
            "action": "restart", "platform": self.name, "workload": workload, "namespace": self.namespace,
            "restarted_at": now, "image": dep.spec.template.spec.containers[0].image,
            "revision_before": (dep.metadata.annotations or {}).get(REVISION_ANNOTATION),
            "revision_after": (after.metadata.annotations or {}).get(REVISION_ANNOTATION),
        }

    def scale(self, workload: str, replicas: int) -> dict[str, Any]:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise PlatformError(f"replicas must be a non-negative integer, not {replicas!r}")
        self._connect()
        what = f"scale deployment {self.namespace}/{workload}"
        try:
            before = self._call(what, self._apps.read_namespaced_deployment_scale, workload, self.namespace)
        except PlatformError as exc:
            if getattr(exc, "status", None) == 404:
                raise PlatformError(f"deployment {workload!r} not found in namespace {self.namespace!r}") from None
            raise
        after = self._call(what, self._apps.patch_namespaced_deployment_scale, workload, self.namespace,
                           {"spec": {"replicas": replicas}})
        return {
            "action": "scale", "platform": self.name, "workload": workload, "namespace": self.namespace,
            "replicas_before": before.spec.replicas if before.spec else None,
            "replicas_after": after.spec.replicas if after.spec else replicas,
        }

    def _rollback_replicaset(self, dep: Any) -> Any | None:
        """``kubectl rollout undo``'s target: the newest ReplicaSet of a revision below the current one."""
        current_rev = self._revision_of(dep)
        rss = self._replicasets(dep)  # newest first
        revs = [rs for rs in rss if 0 < self._revision_of(rs) < max(current_rev, 1)] if current_rev else rss[1:]
        return revs[0] if revs else None

    def rollback_target(self, workload: str) -> ImageRevision | None:
        rs = self._rollback_replicaset(self._deployment(workload))
        if rs is None:
            return None
        containers = rs.spec.template.spec.containers if rs.spec and rs.spec.template else []
        return ImageRevision(revision=str(self._revision_of(rs)), image=containers[0].image if containers else "",
                             created_at=_iso(rs.metadata.creation_timestamp), current=False)

    def rollback(self, workload: str) -> dict[str, Any]:
        from kubernetes.client import ApiClient

        dep = self._deployment(workload)
        if dep.spec.paused:
            raise PlatformError(f"deployment {workload!r} is paused; resume it before rolling back")
        current_rev = self._revision_of(dep)
        target = self._rollback_replicaset(dep)
        if target is None:
            raise PlatformError(f"deployment {workload!r} has no previous revision to roll back to "
                                f"(current revision {current_rev or '?'})")
        template = ApiClient().sanitize_for_serialization(target.spec.template)
        labels = (template.get("metadata") or {}).get("labels") or {}
        labels.pop(HASH_LABEL, None)
        annotations = {k: v for k, v in (dep.metadata.annotations or {}).items() if k in _ANNOTATIONS_TO_SKIP}
        annotations.update({k: v for k, v in (target.metadata.annotations or {}).items()
                            if k not in _ANNOTATIONS_TO_SKIP})
        image_before = dep.spec.template.spec.containers[0].image
        image_after = (target.spec.template.spec.containers or [None])[0]
        patch = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace" if dep.metadata.annotations is not None else "add",
             "path": "/metadata/annotations", "value": annotations},
        ]
        self._call(f"rollback deployment {self.namespace}/{workload}",
                   self._apps.patch_namespaced_deployment, workload, self.namespace, patch)
        after = self._deployment(workload)
        return {
            "action": "rollback", "platform": self.name, "workload": workload, "namespace": self.namespace,
            "image_before": image_before, "image_after": image_after.image if image_after else None,
            "revision_before": str(current_rev), "to_revision": str(self._revision_of(target)),
            "revision_after": (after.metadata.annotations or {}).get(REVISION_ANNOTATION),
            "replicaset": target.metadata.name,
        }
