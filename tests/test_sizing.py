"""Actor sizes come from the nodes that exist, and a size no node can hold fails with both named.

Nodes are plain dicts shaped like `ray.nodes()` entries; the same code runs on a real two-node
cluster in tests/test_cluster.py.
"""
import itertools

import pytest

from facetracks.jobs.sizing import (ActorSizeError, alive_nodes, capacity, decode_threads, describe, fits, plan_actors,
                                   plan_beside_gpus)


def node(cpus, gpus=0, alive=True, ip="10.0.0.1"):
    res = {"CPU": float(cpus), "memory": 8e9, "object_store_memory": 2e9, f"node:{ip}": 1.0}
    if gpus:
        res["GPU"] = float(gpus)
    return {"NodeID": f"{ip}-{cpus}-{gpus}", "Alive": alive, "NodeManagerAddress": ip, "Resources": res}


def placeable(nodes, plan):
    """All `plan.count` actors can run at once, each on one node."""
    return capacity(alive_nodes(nodes), plan.cpus, plan.gpus) >= plan.count


def test_two_one_cpu_nodes_get_two_one_cpu_actors_not_one_of_two():
    plan = plan_actors([node(1), node(1)], n_tasks=6)
    assert (plan.count, plan.cpus, plan.gpus) == (2, 1.0, 0.0)


@pytest.mark.parametrize("n_tasks, expect", [(20, (8, 1.0)), (3, (3, 2.0)), (1, (1, 8.0))])
def test_cpu_actors_take_a_cpu_each_and_spare_cpus_go_to_fewer_actors(n_tasks, expect):
    plan = plan_actors([node(8)], n_tasks)
    assert (plan.count, plan.cpus) == expect


def test_a_small_node_makes_every_actor_fit_every_node():
    nodes = [node(16), node(1, ip="10.0.0.2")]
    plan = plan_actors(nodes, n_tasks=100)
    assert plan.cpus == 1.0 and plan.count == 17
    assert all(fits(n, plan.cpus, 0) for n in alive_nodes(nodes))


def test_a_head_without_cpus_is_left_out():
    plan = plan_actors([node(0), node(4, ip="10.0.0.2"), node(4, ip="10.0.0.3")], n_tasks=100)
    assert (plan.count, plan.cpus) == (8, 1.0)


def test_more_actors_than_cpus_share_them():
    plan = plan_actors([node(2)], n_tasks=10, actors=4)
    assert (plan.count, plan.cpus) == (4, 0.5)


def test_gpu_actor_gets_its_gpu_share_of_the_leanest_gpu_nodes_cpus():
    plan = plan_actors([node(16, 1)], n_tasks=10, gpus_per_actor=0.25)
    assert (plan.count, plan.cpus, plan.gpus) == (4, 4.0, 0.25)
    plan = plan_actors([node(8, 2), node(16, 1, ip="10.0.0.2"), node(64, ip="10.0.0.3")], n_tasks=10)
    assert (plan.count, plan.cpus, plan.gpus) == (3, 4.0, 1.0)     # one per GPU; the CPU node takes none


def test_a_fractional_gpu_share_sits_on_one_gpu():
    plan = plan_actors([node(16, 2)], n_tasks=10, gpus_per_actor=0.6)
    assert plan.count == 2          # 2 x 0.6 would need 1.2 of one GPU


def test_cpu_actors_on_a_gpu_cluster_when_asked():
    plan = plan_actors([node(16, 1), node(4, ip="10.0.0.2")], n_tasks=100, gpus_per_actor=0)
    assert (plan.count, plan.cpus, plan.gpus) == (20, 1.0, 0.0)


def test_dead_nodes_do_not_count():
    plan = plan_actors([node(64, 8, alive=False), node(2, ip="10.0.0.2")], n_tasks=100)
    assert (plan.count, plan.cpus, plan.gpus) == (2, 1.0, 0.0)
    with pytest.raises(ActorSizeError, match="no alive node"):
        plan_actors([node(64, alive=False)], n_tasks=1)


def test_explicit_cpus_no_node_has_name_what_was_asked_and_what_nodes_have():
    with pytest.raises(ActorSizeError) as e:
        plan_actors([node(1), node(1, ip="10.0.0.2")], n_tasks=6, cpus_per_actor=2)
    msg = str(e.value)
    assert "{CPU: 2}" in msg and "--cpus-per-actor 2" in msg and "2 x {CPU: 1}" in msg
    assert "\n" not in msg


def test_explicit_gpu_share_on_a_cluster_without_gpus_is_refused():
    with pytest.raises(ActorSizeError) as e:
        plan_actors([node(16), node(16, ip="10.0.0.2")], n_tasks=6, gpus_per_actor=0.5)
    assert "{GPU: 0.5} (--gpus-per-actor 0.5)" in str(e.value) and "2 x {CPU: 16}" in str(e.value)


def test_more_explicit_actors_than_fit_at_once_are_refused():
    # the third would stay pending and the tasks queued on it would never return
    with pytest.raises(ActorSizeError, match="3 actors of .CPU: 1. .*hold 2"):
        plan_actors([node(1), node(1, ip="10.0.0.2")], n_tasks=6, actors=3, cpus_per_actor=1)
    with pytest.raises(ActorSizeError, match="2 actors of .CPU: 8, GPU: 1.*hold 1"):
        plan_actors([node(8, 1)], n_tasks=6, actors=2)


def test_a_share_of_more_than_one_gpu_must_be_whole():
    with pytest.raises(ActorSizeError, match="whole number"):
        plan_actors([node(16, 4)], n_tasks=6, gpus_per_actor=1.5)
    assert plan_actors([node(16, 4)], n_tasks=6, gpus_per_actor=2).count == 2


def test_describe_groups_nodes_by_shape():
    nodes = alive_nodes([node(1), node(1, ip="10.0.0.2"), node(16, 1, ip="10.0.0.3")])
    assert describe(nodes) == "2 x {CPU: 1}, 1 x {CPU: 16, GPU: 1}"


SHAPES = [[node(1)], [node(1), node(1)], [node(2), node(3)], [node(0), node(1), node(16)], [node(16, 1)],
          [node(8, 2), node(4)], [node(6, 4), node(32, 1)], [node(0, 1)]]


@pytest.mark.parametrize("nodes", SHAPES, ids=[describe(alive_nodes(s)) for s in SHAPES])
def test_every_plan_fits_or_is_refused(nodes):
    """Whatever the options: a plan whose actors can all run at once, or ActorSizeError."""
    checked = 0
    for actors, cpus, gpus, n_tasks in itertools.product([0, 1, 3, 40], [0, 0.5, 1, 2, 4], [None, 0, 0.5, 1],
                                                         [1, 5, 100]):
        try:
            plan = plan_actors(nodes, n_tasks, actors, cpus, gpus)
        except ActorSizeError:
            continue
        checked += 1
        assert 1 <= plan.count <= n_tasks and placeable(nodes, plan), (actors, cpus, gpus, n_tasks, plan)
        if not actors and not cpus and gpus is None:
            assert plan.count == min(n_tasks, capacity(alive_nodes(nodes), plan.cpus, plan.gpus))   # as many as fit
    assert checked


def test_streams_share_the_actors_cores_for_decoding():
    assert decode_threads(4, 1) == 0           # a lone stream: FFmpeg's own choice
    assert decode_threads(4, 16) == 1          # 16 streams on 4 cores: one thread each, not 17
    assert decode_threads(16, 4) == 4
    assert decode_threads(2.5, 2) == 1


def test_stage_servers_take_a_gpu_and_a_core_each_from_what_cpu_actors_get():
    from facetracks.jobs.sizing import plan_actors, without_stage_servers
    gpu_node = {"Alive": True, "NodeManagerAddress": "a", "Resources": {"CPU": 16.0, "GPU": 2.0}}
    cpu_node = {"Alive": True, "NodeManagerAddress": "b", "Resources": {"CPU": 8.0}}
    dead = {"Alive": False, "NodeManagerAddress": "c", "Resources": {"CPU": 64.0, "GPU": 8.0}}
    nodes, servers, cpus = without_stage_servers([gpu_node, cpu_node, dead])
    assert servers == 2 and cpus == 1.0
    assert [n["Resources"] for n in nodes[:2]] == [{"CPU": 14.0}, {"CPU": 8.0}]
    assert plan_actors(nodes, 100, 0, 1.0, 0.0).count == 22          # every core the servers left
    # no GPU: one server on the first node; a small node keeps half its cores for CPU actors
    nodes, servers, cpus = without_stage_servers([{"Alive": True, "Resources": {"CPU": 1.0}}])
    assert servers == 1 and cpus == 0.5 and nodes[0]["Resources"] == {"CPU": 0.5}
    assert gpu_node["Resources"] == {"CPU": 16.0, "GPU": 2.0}         # the caller's entries untouched


def test_nodes_without_a_gpu_beside_gpu_nodes_get_cpu_actors_of_their_own():
    """A CPU head and a CPU worker beside two GPU nodes: GPU actors on the GPU nodes, and a
    one-CPU actor per CPU of the others (placed by node id, spread over them), no more than the
    tasks the GPU actors leave; none on a cluster of GPU nodes only, or of CPU nodes only."""
    nodes = [node(4, ip="10.0.0.1"), node(16, 1, ip="10.0.0.2"), node(16, 1, ip="10.0.0.3"),
             node(3, ip="10.0.0.4"), node(8, alive=False, ip="10.0.0.5")]
    gpu = plan_actors(nodes, n_tasks=100)
    assert (gpu.count, gpu.cpus, gpu.gpus) == (2, 16.0, 1.0)
    ids = plan_beside_gpus(nodes, 100, gpu.count)
    assert ids == ["10.0.0.1-4-0", "10.0.0.4-3-0"] * 3 + ["10.0.0.1-4-0"]
    assert plan_beside_gpus(nodes, 5, gpu.count) == ["10.0.0.1-4-0", "10.0.0.4-3-0", "10.0.0.1-4-0"]
    assert plan_beside_gpus(nodes, 2, gpu.count) == []
    assert plan_beside_gpus([node(16, 1), node(16, 1, ip="10.0.0.2")], 100, 2) == []
    assert plan_beside_gpus([node(4), node(4, ip="10.0.0.2")], 100, 0) == []
