"""The models a server holds: each backbone loaded once, every adaptation restored on top of it, and
which version answers each task (the active one, or an A/B split between two).

Hot swap (R17): a new version is loaded, restored and warmed up *before* the task's pointer moves to
it, under a lock, so requests in flight keep the object they were routed to and a failed load leaves
the old version serving. Unloading the version a task is using, or one in an A/B test, is refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tasktune.errors import TaskTuneError
from tasktune.evaluation.scorer import Scorer
from tasktune.serving.abtest import ABSplit
from tasktune.serving.errors import ServingError, conflict, not_found
from tasktune.serving.settings import ServeSettings
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec

log = logging.getLogger(__name__)


@dataclass
class Served:
    """One adaptation ready to answer: its scorer and what the monitor needs to know about it."""

    task: str
    version: int
    route: str
    kind: str
    spec: TaskSpec
    scorer: Scorer
    backbone: str | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    bytes: int = 0

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.spec.label_names)

    @property
    def key(self) -> tuple[str, int]:
        return (self.task, self.version)


@dataclass(frozen=True)
class ABTest:
    """Two loaded versions of a task and the traffic split between them, since ``started`` (epoch s):
    the verdict counts only the feedback on requests this test routed."""

    a: int
    b: int
    share_b: float
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        try:
            self.split  # noqa: B018  (ABSplit validates the share)
        except ValueError as err:
            raise ServingError(422, "invalid_ab", str(err)) from None

    @property
    def split(self) -> ABSplit:
        return ABSplit(version_a=f"v{self.a}", version_b=f"v{self.b}", share_b=self.share_b)

    def version_for(self, key: str) -> tuple[int, str]:
        arm = self.split.assign(key)
        return (self.b if arm == "B" else self.a), arm


@dataclass
class Routing:
    active: int
    ab: ABTest | None = None


Loader = Callable[[str, str | int], Served]


class ModelPool:
    """Thread-safe: the event loop routes, the batch worker predicts, admin calls swap."""

    def __init__(self, loader: Loader):
        self._load = loader
        self._lock = threading.RLock()
        self.served: dict[tuple[str, int], Served] = {}
        self.routing: dict[str, Routing] = {}
        # The task definition of every version served since start, kept after an unload: feedback on
        # its logged predictions names labels in that version's own label list.
        self.specs: dict[tuple[str, int], TaskSpec] = {}

    # --- loading ----------------------------------------------------------------------------------
    def load(self, task: str, ref: str | int) -> Served:
        """Load (or return the already-loaded) version; the active version does not change."""
        served = self._load(task, ref)
        with self._lock:
            existing = self.served.get(served.key)
            if existing is None:
                self.served[served.key] = served
                self.specs[served.key] = served.spec
                self.routing.setdefault(task, Routing(active=served.version))
        if existing is not None:
            _release(served.scorer)  # loaded twice (concurrent loads): the copy nobody will use
            return existing
        return served

    def activate(self, task: str, ref: str | int) -> Served:
        served = self.load(task, ref)  # outside the lock: loading takes seconds, routing must not wait
        with self._lock:
            if served.key not in self.served:  # unloaded between the load above and this lock
                raise conflict(f"v{served.version} of {task!r} was unloaded while activating it; try again")
            routing = self.routing[task]
            if routing.ab is not None:
                raise conflict(
                    f"task {task!r} has an A/B test running ({routing.ab.a} vs {routing.ab.b}); stop or "
                    "promote it first"
                )
            previous, routing.active = routing.active, served.version
        log.info("task %s: v%d active (was v%d)", task, served.version, previous)
        return served

    def unload(self, task: str, version: int) -> None:
        with self._lock:
            if (task, version) not in self.served:
                raise not_found("version", f"task {task!r} has no loaded version {version}")
            routing = self.routing[task]
            in_use = {routing.active} | ({routing.ab.a, routing.ab.b} if routing.ab else set())
            if version in in_use:
                raise conflict(f"v{version} of {task!r} is serving traffic; activate another version first")
            served = self.served.pop((task, version))
        # A LoRA adapter on a shared host is deleted from it (at once, or by the next forward if one is
        # running); a request already routed to this version then fails cleanly instead of using it.
        _release(served.scorer)

    # --- A/B ----------------------------------------------------------------------------------------
    def start_ab(self, task: str, a: int, b: int, share_b: float) -> ABTest:
        with self._lock:
            for v in (a, b):
                if (task, v) not in self.served:
                    raise not_found("version", f"load v{v} of {task!r} before testing it")
            if a == b:
                raise ServingError(422, "invalid_ab", "an A/B test needs two different versions")
            routing = self.routing[task]
            if routing.ab is not None:  # replacing it would silently drop its users' assignment
                raise conflict(
                    f"task {task!r} has an A/B test running (v{routing.ab.a} vs v{routing.ab.b}); stop or "
                    "promote it first"
                )
            if a != routing.active:  # A is the control: what serves now, not a change of production
                raise conflict(
                    f"A must be the version serving {task!r} now (v{routing.active}), not v{a}; "
                    f"activate v{a} first to test against it"
                )
            split = ABTest(a, b, share_b)
            routing.ab = split
            return split

    def stop_ab(self, task: str, keep: int | None = None) -> None:
        with self._lock:
            routing = self._routing(task)
            if routing.ab is None:
                raise conflict(f"task {task!r} has no A/B test running")
            if keep is not None:
                routing.active = keep
            routing.ab = None

    # --- routing ------------------------------------------------------------------------------------
    def _routing(self, task: str) -> Routing:
        routing = self.routing.get(task)
        if routing is None:
            raise not_found("task", f"task {task!r} is not served here", known=sorted(self.routing))
        return routing

    def route(self, task: str, key: str, version: int | None = None) -> tuple[Served, str | None]:
        """The adaptation that answers this request, and its A/B arm (None outside a test)."""
        with self._lock:
            routing = self._routing(task)
            if version is not None:
                served = self.served.get((task, version))
                if served is None:
                    loaded = sorted(v for t, v in self.served if t == task)
                    raise not_found("version", f"v{version} of {task!r} is not loaded", loaded=loaded)
                return served, None
            if routing.ab is not None:
                version, arm = routing.ab.version_for(key)
                return self.served[(task, version)], arm
            return self.served[(task, routing.active)], None

    def spec_of(self, task: str, version: int) -> TaskSpec:
        """The task definition of the version that made a logged prediction (versions of a task may
        order or name their labels differently), for feedback on it."""
        with self._lock:
            spec = self.specs.get((task, version))
        read = getattr(self._load, "task_spec", None)
        if spec is None and read is not None:  # served before a restart: its task.json in the registry
            spec = read(task, version)
            if spec is not None:
                with self._lock:
                    self.specs[(task, version)] = spec
        if spec is None:
            raise ServingError(
                409,
                "version_unknown",
                f"v{version} of {task!r} has not been served since this server started, so its labels are "
                "unknown here; load it to give feedback on its predictions",
            )
        return spec

    def tasks(self) -> list[str]:
        with self._lock:
            return sorted(self.routing)

    def active(self, task: str) -> Served:
        with self._lock:
            return self.served[(task, self._routing(task).active)]

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            out = []
            for task in sorted(self.routing):
                r = self.routing[task]
                versions = sorted(v for t, v in self.served if t == task)
                active = self.served[(task, r.active)]
                out.append(
                    {
                        "task": task,
                        "active_version": r.active,
                        "loaded_versions": versions,
                        "route": active.route,
                        "kind": active.kind,
                        "backbone": active.backbone,
                        "labels": list(active.labels),
                        "ab": None
                        if r.ab is None
                        else {"a": r.ab.a, "b": r.ab.b, "share_b": r.ab.share_b, "started": r.ab.started},
                    }
                )
            return out


def _release(scorer: object) -> None:
    """Free what a dropped scorer holds outside itself (its adapter on a shared LoRA host)."""
    release = getattr(scorer, "release", None)
    if callable(release):
        release()


class RegistryLoader:
    """Loads versions from a registry: every backbone once, each adaptation restored onto it and
    warmed up (one prediction) before it is handed out. LoRA adaptations go onto one shared copy of
    their backbone per backbone (:mod:`tasktune.serving.shared_lora`), as named adapters that mix in
    one forward pass, instead of a private copy each."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.backbones: dict[str, Any] = {}
        self.lora_hosts: dict[str, Any] = {}  # backbone name -> SharedLoraHost, made on first use
        self._backbone_lock = threading.Lock()

    def backbone(self, name: str):
        from tasktune.backbones.loading import load_backbone

        with self._backbone_lock:  # two tasks on one backbone must not load it twice
            if name not in self.backbones:
                where = self.settings.backbones.get(name, name)
                self.backbones[name] = load_backbone(
                    where, device=self.settings.device, allow_hub=self.settings.allow_hub
                )
            return self.backbones[name]

    def lora_host(self, name: str):
        from tasktune.serving.shared_lora import SharedLoraHost

        backbone = self.backbone(name)
        with self._backbone_lock:
            if name not in self.lora_hosts:
                self.lora_hosts[name] = SharedLoraHost(backbone)
            return self.lora_hosts[name]

    def _restore(self, artifact, backbone_name: str, backbone) -> Scorer:
        """The adaptation's scorer: on the backbone's shared LoRA host where that applies, else the
        route's own restorer."""
        from tasktune.routes.restore import restore_scorer
        from tasktune.serving.shared_lora import SharedLoraRefused, restore_shared_lora

        if artifact.kind == "lora":
            try:
                scorer = restore_shared_lora(artifact, self.lora_host(backbone_name))
            except SharedLoraRefused as err:
                log.warning("%s; restoring it on a private copy of the backbone", err)
                scorer = None
            if scorer is not None:
                return scorer
        return restore_scorer(artifact, backbone)

    def task_spec(self, task: str, version: int) -> TaskSpec | None:
        """A version's task definition from its verified task.json alone (no tensors loaded): the labels
        feedback on its logged predictions names. None when the registry has no such version or file."""
        import json

        from tasktune.adaptations import TASK_FILE
        from tasktune.registry import Registry, RegistryError
        from tasktune.registry.files import verify_file
        from tasktune.task.spec import parse_task

        try:
            with Registry(self.settings.registry) as reg:
                info = reg.show(task, version)
                folder, manifest = reg.check_version(info)
                entry = manifest.files.get(TASK_FILE)
                if entry is None:
                    return None
                verify_file(folder / TASK_FILE, entry.sha256, entry.bytes)
                data = json.loads((folder / TASK_FILE).read_bytes())
        except RegistryError:
            return None
        return parse_task(data, source=f"{task} v{version}: {TASK_FILE}")

    def __call__(self, task: str, ref: str | int) -> Served:
        from tasktune.adaptations import REFERENCE_FILE
        from tasktune.registry import IntegrityError, Registry, RegistryError
        from tasktune.routes.restore import restore_task

        start = time.perf_counter()
        try:
            with Registry(self.settings.registry) as reg:
                artifact = reg.load(task, ref)
                size = reg.show(task, artifact.version).bytes
        except IntegrityError as err:  # stored bytes are wrong: the operator must look, not retry
            raise ServingError(409, "load_failed", f"cannot load {task}@{ref}: {err}") from err
        except RegistryError as err:  # no such task, version or alias
            raise ServingError(404, "load_failed", f"cannot load {task}@{ref}: {err}") from err
        identity = artifact.backbone
        if identity is None:
            raise ServingError(
                409, "load_failed", f"{task} v{artifact.version} records no backbone; cannot serve it"
            )
        try:
            backbone = self.backbone(identity.name)
            scorer = self._restore(artifact, identity.name, backbone)
            try:
                spec = restore_task(artifact)
                if self.settings.warmup:
                    scorer.predict_proba([Example("warm-up", 0)])
            except BaseException:
                _release(scorer)  # its adapter must not stay on the shared host
                raise
        except (TaskTuneError, RegistryError) as err:
            raise ServingError(409, "load_failed", f"cannot serve {task} v{artifact.version}: {err}") from err
        log.info(
            "restored %s v%d (%s) in %.2f s",
            task,
            artifact.version,
            artifact.manifest.route,
            time.perf_counter() - start,
        )
        return Served(
            task=task,
            version=artifact.version,
            route=artifact.manifest.route,
            kind=artifact.kind,
            spec=spec,
            scorer=scorer,
            backbone=identity.name,
            reference=artifact.json_files.get(REFERENCE_FILE) or {},
            bytes=size,
        )
