"""The GPU stages in a process of their own: one `StageServer` per GPU, fed by CPU actors.

Why: a GPU actor that follows 16 streams on threads runs its batches on one more thread, and
every tensor call of a batch waits for the GIL while the streams run their Python. On the H100 a
`fast` detector call of 3.4 frames took 45 ms in the job against 5.8 ms for 4 frames alone, and
more streams made it slower (README, "On a GPU"). A server process has no stream threads: its
calls take what they take alone. The CPU actors (`AnnotateWorker` on a CPU, one core each, a few
streams each) decode, follow, batch their streams' calls (pipeline/batching.py) and cut the crops
themselves, so a call carries crops (12.5 KB a face), not frames; the server runs the network on
them (`LandmarkPredictor.forward_crops`) and, where the CPU actors have no OpenCV cascade (OpenCV 5),
the torch cascade on whole frames.

`StageServer` runs no Ray calls (`ray_runner.py` wraps it in an actor); `RemoteStages` is what a
CPU actor holds: every server's handle and node, and the calls through them.

Faults. A server whose process dies (the OOM killer, a driver fault) is restarted by Ray with the
same arguments (`SERVER_RESTARTS` times) and the calls it held are sent again, once
(`CALL_RETRIES`): the calls are pure functions of the crops and frames they carry, so the rows
are those of a run without the fault. A call under which it dies again while it comes back is
the likely cause: that call fails (`StageCallKilled`: its video only), and is sent to no other
server. A server that is gone for good (restarts used up, or not back within `SERVER_WAIT_S`:
its node is gone) is left: each CPU actor sends its calls to the next server in its order, its
own node's first; with none left, the video fails naming the cause.
"""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass

import numpy as np
import ray
import torch

from facetracks.models.inference import LandmarkPredictor
from facetracks.pipeline.batching import SharedStages
from facetracks.pipeline.profiles import make_detector

from .code_id import check_code

SERVER_CALLS = 32        # calls a server takes at once (Ray's max_concurrency): what one batch can merge
SERVER_RESTARTS = 5      # times Ray restarts a server whose process died (then it is gone for good)
CALL_RETRIES = 1         # times a call is sent again to its restarted server (more: a call that kills it would use up its restarts)
SERVER_WAIT_S = 300      # a call not answered by then: its server is not coming back (its node is gone)

# Tests set this: "once", a server's first life ends at its third forward call; "always", every
# life ends at its first (SIGKILL, as the OOM killer ends it). Never set in normal use.
KILL_HOOK = "FACETRACKS_TEST_KILL_SERVER"


class StageServerLost(RuntimeError):
    """Every stage server of the run is gone: the network cannot run for this actor's videos."""


class StageCallKilled(RuntimeError):
    """A call whose server died under it again after its restart, while the server came back: the
    call is the likely cause (an input that kills it), so it fails here, costing its video only."""


def _reconstructed() -> bool:
    """Whether this process is a restart of the actor (Ray ran the constructor again)."""
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:      # noqa: BLE001 - outside an actor
        return False


class WeightsStore:
    """The checkpoint's bytes, held for the run by a small actor of its own, which the stage
    servers read by name when they start and restart. Why not a constructor argument: one over
    100 KB travels through the object store, and for a restartable actor Ray then reports at
    error level that its restart may fail (ray-project/ray#53727)."""

    def __init__(self, weights: bytes | None):
        self.weights = weights

    def get(self) -> bytes | None:
        return self.weights


class StageServer:
    """The network (and the torch cascade) on this process's device, for crops and frames sent in.
    Calls that arrive together (the actor runs `SERVER_CALLS` at once) go through the GPU as one
    batch (`SharedStages`, the "forward" and multi-frame "detect" calls): a call that comes while
    a batch runs joins the next one, so a busy server runs fewer, larger passes and an idle one
    answers at once. Its threads only wait on each other; no stream's Python runs here."""

    def __init__(self, weights: bytes | str | None, detector: dict, predictor: dict, device: str | None = None,
                 store: str = "", code: str | None = None):
        """`store`: the name of the run's `WeightsStore`, read for the weights (instead of `weights`)
        when the server starts and each time Ray restarts it. `code`: as `AnnotateWorker`'s."""
        check_code(code)
        if store:
            weights = ray.get(ray.get_actor(store).get.remote())
        self.predictor = LandmarkPredictor.load(weights, device=device, **predictor)
        self.detector = make_detector({**detector, "backend": "torch"}, self.predictor.device)
        self.shared = SharedStages(self.detector, self.predictor)
        self._lock = threading.Lock()
        self.rpcs = {"forward": 0, "detect": 0}
        self.restarted = _reconstructed()

    def _count(self, kind: str) -> int:
        with self._lock:
            self.rpcs[kind] += 1
            return self.rpcs[kind]

    def _test_kill_hook(self, calls: int) -> None:
        mode = os.environ.get(KILL_HOOK)
        if (mode == "once" and not self.restarted and calls == 3) or (mode == "always" and calls == 1):
            os.kill(os.getpid(), signal.SIGKILL)

    def forward(self, crops: np.ndarray, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
        self._test_kill_hook(self._count("forward"))
        with self.shared.stream():
            return self.shared.call("forward", crops, mirror)

    def detect_batch(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        self._count("detect")
        with self.shared.stream():
            return self.shared.call("detect", list(grays))

    def stats(self) -> dict:
        """Calls received (`forward`, `detect`), and the batches they made (BatchStats' fields:
        `landmark_calls`/`landmark_crops` are forward passes and crops, `detect_calls`/`detect_frames`
        the cascade's calls and frames, with their seconds), since this process started: a
        restarted server (`restarted`) counts from its restart."""
        with self._lock:
            return {**self.rpcs, **self.shared.stats.to_dict(), "restarted": int(self.restarted)}

    def node(self) -> str:
        """The Ray node this server runs on: CPU actors send to their own node's servers first."""
        return ray.get_runtime_context().get_node_id()

    def device(self) -> str:
        d = self.predictor.device
        name = f" ({torch.cuda.get_device_name()})" if d.type == "cuda" else ""
        return f"{d}{name}, {self.predictor.precision}"


@dataclass(frozen=True)
class Server:
    handle: object         # the StageServer actor's handle
    node: str              # the Ray node it runs on
    store: object = None   # the WeightsStore it restarts from, kept alive by this handle


@dataclass
class RemoteStages:
    """A CPU actor's way to the stage servers: the network always, the detector when `detect` is
    set (the CPU actor has no OpenCV cascade of its own). Sent to the actor with the handles.
    Its calls go to one server; the order is fixed on the first call, in the actor: the servers
    on the actor's own node first (crops need not cross the network), starting from the
    `first`-th of them, so the actors of a node spread over its GPUs; then the others. A server
    gone for good is skipped from then on (module docstring)."""
    servers: list[Server]
    detect: bool = False
    device: str = ""                # the servers' (StageServer.device), for the run's summary
    first: int = 0                  # the driver's count of actors made: spreads them over a node's servers

    def __post_init__(self):
        self._setup()

    def _setup(self) -> None:
        self._lock = threading.Lock()
        self._order: list[int] | None = None    # indices into servers, own node first
        self._here = ""
        self._gone: set[int] = set()
        self.counts = {"stage_calls_same_node": 0, "stage_calls_other_node": 0, "stage_servers_left": 0}
        self._lost: Exception | None = None       # why the last server given up was given up

    def __getstate__(self) -> dict:    # the handles and settings travel; the lock and the order do not
        return {k: getattr(self, k) for k in ("servers", "detect", "device", "first")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._setup()

    def _ranked(self) -> list[int]:
        with self._lock:
            if self._order is None:
                self._here = ray.get_runtime_context().get_node_id()
                own = [i for i, s in enumerate(self.servers) if s.node == self._here]
                far = [i for i, s in enumerate(self.servers) if s.node != self._here]
                self._order = [g[(k + self.first) % len(g)] for g in (own, far) for k in range(len(g))]
            return [i for i in self._order if i not in self._gone]

    def _leave(self, i: int, cause: Exception) -> None:
        with self._lock:
            if i not in self._gone:
                self._gone.add(i)
                self.counts["stage_servers_left"] += 1
            self._lost = cause

    @staticmethod
    def _answers(server: Server) -> bool:
        """Whether the server is up (after a restart if it is restarting); False: gone for good."""
        try:
            ray.get(server.handle.node.remote(), timeout=SERVER_WAIT_S)
            return True
        except ray.exceptions.RayError:
            return False

    def _call(self, method: str, *args):
        for i in self._ranked():
            server = self.servers[i]
            try:
                out = ray.get(getattr(server.handle, method).remote(*args), timeout=SERVER_WAIT_S)
            except ray.exceptions.GetTimeoutError as e:     # not back in time: its node is gone
                self._leave(i, e)
                continue
            except ray.exceptions.RayActorError as e:
                if self._answers(server):
                    raise StageCallKilled(f"the stage server died under this call ({method}) {CALL_RETRIES + 1} "
                                          f"times and came back: an input that kills it?") from None
                self._leave(i, e)                 # its restarts are used up
                continue
            with self._lock:
                self.counts["stage_calls_same_node" if server.node == self._here else "stage_calls_other_node"] += 1
            return out
        with self._lock:
            cause = self._lost
        raise StageServerLost(f"every stage server of the run is gone ({len(self.servers)}; the last one: "
                              f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0][:200]})")

    def stats(self) -> dict:
        """Calls answered by a server on this actor's node and on another, and servers given up."""
        with self._lock:
            return dict(self.counts)

    # Ray hands arrays back read-only (zero-copy from its object store); the caller's fill them in place
    def forward(self, crops: np.ndarray, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
        out, contrast = self._call("forward", crops, mirror)
        return out.copy(), contrast.copy()

    def detect_batch(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        return [b.copy() for b in self._call("detect_batch", grays)]

    def detector(self) -> "RemoteDetector":
        return RemoteDetector(self)


@dataclass
class RemoteDetector:
    """A `FaceDetector` whose cascade runs in the server; batched calls go there in one message."""
    stages: RemoteStages

    def detect(self, gray: np.ndarray) -> np.ndarray:
        return self.stages.detect_batch([gray])[0]

    def detect_batch(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        return self.stages.detect_batch(grays)
