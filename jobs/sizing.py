"""How many annotate actors, and how big, from the nodes the cluster has (`ray.nodes()`).

Ray leaves an actor that no node can hold pending for ever, and the driver then waits with no
message. So every size here comes from a node that exists, and a size that no alive node can hold,
or more actors than fit at once (a task queued on an actor that never starts never returns), is
refused with `ActorSizeError` before any actor is created, naming what was asked and what the
nodes have. Pure functions of the node list, so they are tested with plain dicts.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass

# A CPU actor's default share while there is work for every actor: one core. Each actor's follow
# loop is one Python thread and the networks' convolutions are small, so a core per process beats
# torch splitting each convolution over two: on 2 cores, 15 segments of the synthetic minute,
# 2 actors of 1 CPU against 1 of 2 (`facetracks bench --actors 1,2`, three runs): accurate 1.20-1.24x
# the fps, fast 1.10-1.19x (2026.11.27; docs/bench/scaling_cpu.json).
MAX_DEFAULT_CPUS = 1
_EPS = 1e-6            # Ray counts resources in 1e-4 units; 3 x 0.3333 CPUs still fit in 1


class ActorSizeError(ValueError):
    """Actors of the asked size (or number) cannot all run on the cluster's alive nodes."""


@dataclass(frozen=True)
class Node:
    address: str
    cpus: float
    gpus: float
    node_id: str = ""


@dataclass(frozen=True)
class ActorPlan:
    count: int
    cpus: float      # num_cpus of each actor (Haar and torch run on these)
    gpus: float      # num_gpus of each actor: a share of one GPU, or whole GPUs


def alive_nodes(nodes: list[dict]) -> list[Node]:
    """The alive entries of `ray.nodes()`, reduced to what sizing uses (total, not free, resources:
    another job's actors end, a node that is too small never grows)."""
    return [Node(n.get("NodeManagerAddress", "?"), float(n["Resources"].get("CPU", 0)),
                 float(n["Resources"].get("GPU", 0)), n.get("NodeID", ""))
            for n in nodes if n.get("Alive")]


def fits(node: Node, cpus: float, gpus: float) -> int:
    """How many actors of this size the node holds at once. Ray places a fractional GPU share on a
    single GPU, so two 0.6 shares need two GPUs."""
    by_cpu = math.floor(node.cpus / cpus + _EPS) if cpus > 0 else math.inf
    if gpus <= 0:
        by_gpu = math.inf
    elif gpus <= 1:
        by_gpu = math.floor(node.gpus + _EPS) * math.floor(1 / gpus + _EPS)
    else:
        by_gpu = math.floor(node.gpus / gpus + _EPS)
    n = min(by_cpu, by_gpu)
    return 0 if n == math.inf else n        # an actor that asks for nothing is not one of ours


def capacity(nodes: list[Node], cpus: float, gpus: float) -> int:
    return sum(fits(n, cpus, gpus) for n in nodes)


def describe(nodes: list[Node]) -> str:
    """'2 x {CPU: 1}, 1 x {CPU: 16, GPU: 1}': one line however many nodes."""
    if not nodes:
        return "none alive"
    shapes = Counter(_shape(n.cpus, n.gpus) for n in nodes)
    return ", ".join(f"{k} x {shape}" for shape, k in shapes.items())


def _shape(cpus: float, gpus: float, zero_cpus: bool = True) -> str:
    parts = ([f"CPU: {cpus:g}"] if cpus or zero_cpus else []) + ([f"GPU: {gpus:g}"] if gpus else [])
    return "{" + ", ".join(parts) + "}"


def _default_gpu_actor_cpus(nodes: list[Node], gpus: float) -> float:
    """A GPU actor still detects faces on its CPUs (Haar is most of its time), so it gets its GPU
    share of a GPU node's CPUs: 0.25 of a GPU on a 16-core, 1-GPU node gets 4. One size for every
    actor, so the leanest node that can hold the share decides; quarters, so it fits beside it."""
    shares = [n.cpus * gpus / n.gpus for n in nodes if fits(n, 0, gpus)]
    if not shares:
        return 0.0                     # no node has that GPU share; plan_actors says so
    share = min(shares)
    return math.floor(share * 4 + _EPS) / 4 if share >= 0.25 else round(share, 4)


def _default_cpu_actor_cpus(nodes: list[Node], n_tasks: int, actors: int) -> float:
    """Up to MAX_DEFAULT_CPUS each, never more than the smallest node has (so every node gets
    actors); when there are fewer actors to place than that gives, the largest size that still
    places them all (one video on an 8-core laptop: one actor of 8). Asked for more actors than
    there are CPUs, they share CPUs (quarters)."""
    hosts = [n.cpus for n in nodes if n.cpus > 0]
    if not hosts:
        return 1.0                     # no node has CPUs; plan_actors says so
    base = min(MAX_DEFAULT_CPUS, min(hosts))
    want = max(1, min(actors or capacity(nodes, base, 0), n_tasks))
    steps = [0.25, 0.5, 0.75] + list(range(1, math.floor(max(hosts)) + 1))
    placed = [s for s in steps if capacity(nodes, s, 0) >= want]
    return float(max(placed)) if placed else steps[0]


def _asked(cpus: float, gpus: float, cpus_given: float, gpus_given: float | None) -> str:
    opts = ([f"--cpus-per-actor {cpus_given:g}"] if cpus_given else []) + \
           ([f"--gpus-per-actor {gpus_given:g}"] if gpus_given is not None else [])
    return _shape(cpus, gpus, zero_cpus=False) + (f" ({' '.join(opts)})" if opts else "")


def plan_actors(nodes: list[dict], n_tasks: int, actors: int = 0, cpus_per_actor: float = 0,
                gpus_per_actor: float | None = None) -> ActorPlan:
    """The actors for `n_tasks` tasks on these nodes (`ray.nodes()` entries). 0 / None options
    mean "from the nodes": one actor per GPU (GPU share 1) when any node has GPUs, else CPU actors
    (`_default_cpu_actor_cpus`); as many as fit at once, at most one per task."""
    alive = alive_nodes(nodes)
    if not alive:
        raise ActorSizeError("the cluster has no alive node")
    if cpus_per_actor < 0 or actors < 0:
        raise ActorSizeError("--cpus-per-actor and --actors cannot be negative")
    gpus = gpus_per_actor if gpus_per_actor is not None else (1.0 if any(n.gpus for n in alive) else 0.0)
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise ActorSizeError(f"--gpus-per-actor {gpus:g}: a share of one GPU (up to 1) or a whole number of GPUs")
    if cpus_per_actor:
        cpus = float(cpus_per_actor)
    elif gpus:
        cpus = _default_gpu_actor_cpus(alive, gpus)
    else:
        cpus = _default_cpu_actor_cpus(alive, n_tasks, actors)
    asked = _asked(cpus, gpus, cpus_per_actor, gpus_per_actor)
    room = capacity(alive, cpus, gpus)
    if room == 0:
        raise ActorSizeError(f"no alive node can hold an actor of {asked}; the nodes have {describe(alive)}")
    count = max(1, min(actors or room, n_tasks))
    if count > room:
        raise ActorSizeError(f"{count} actors of {asked} do not fit at once: the nodes ({describe(alive)}) "
                             f"hold {room}; ask for fewer --actors or smaller ones")
    return ActorPlan(count, cpus, gpus)


def plan_beside_gpus(nodes: list[dict], n_tasks: int, gpu_actors: int) -> list[str]:
    """CPU actors for the nodes without a GPU of a cluster that has GPU nodes (a CPU head, CPU
    workers beside GPU ones): the node id of each, MAX_DEFAULT_CPUS apiece, as many as those
    nodes' CPUs hold and at most one for each task beyond one per GPU actor. Before, the default
    sizing made GPU actors only, and those nodes did nothing. [] where no node has a GPU, or every
    node has one."""
    alive = alive_nodes(nodes)
    if not any(n.gpus for n in alive):
        return []
    per_node = [[n.node_id] * fits(n, MAX_DEFAULT_CPUS, 0) for n in alive if not n.gpus]
    ids = [i for turn in itertools.zip_longest(*per_node) for i in turn if i is not None]   # spread over the nodes
    return ids[:max(0, n_tasks - gpu_actors)]


def decode_threads(cpus: float, streams: int) -> int:
    """Each stream's decoder threads in an actor following `streams` at once on `cpus` cores: the
    cores shared out (at least one each), or FFmpeg's own choice for a lone stream. Why: FFmpeg
    gives every decoder a thread per core of the machine and one more (at most 16), so 16 streams
    in each of 4 actors on a 16-core GPU node ran ~1,000 decoding threads; one thread a stream
    spends less CPU a frame too (8 streams on 2 cores: 3,300 fps together against 2,700)."""
    return 0 if streams <= 1 else max(1, int(cpus) // streams)


def without_stage_servers(nodes: list[dict], server_cpus: float = 1.0) -> tuple[list[dict], int, float]:
    """`ray.nodes()` entries less what the stage servers take (jobs/stage_server.py): one server
    per GPU, each with a whole GPU and `server_cpus` of its node's CPUs (half a node's CPUs at
    most), or one on the first alive node's CPUs where no node has a GPU. Returns those entries
    (GPU-less: what is left is for CPU actors), the number of servers and the CPUs each asks for.
    Sizing the CPU actors from the remainder keeps every one of them placeable: an actor Ray
    leaves pending never returns its tasks."""
    out = [{**n, "Resources": {k: v for k, v in n.get("Resources", {}).items() if k != "GPU"}} for n in nodes]
    hosts = [(o, int(n["Resources"].get("GPU", 0) + _EPS)) for n, o in zip(nodes, out) if n.get("Alive")]
    hosts = [(o, g) for o, g in hosts if g] or [(o, 1) for o, _ in hosts[:1]]
    if not hosts:
        return out, 0, server_cpus
    each = min([server_cpus] + [o["Resources"].get("CPU", 0) / (2 * g) for o, g in hosts])
    for o, g in hosts:
        o["Resources"]["CPU"] = max(0.0, o["Resources"].get("CPU", 0) - g * each)
    return out, sum(g for _, g in hosts), each
