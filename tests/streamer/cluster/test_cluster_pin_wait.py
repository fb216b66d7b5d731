"""A pinned live stream whose node the cluster does not have says what it waits for, once,
instead of waiting in silence (the driver's scheduling, without Ray: shards are plain refs)."""

from __future__ import annotations

import asyncio
import logging

from streamer.cluster.driver import _ClusterRun
from streamer.cluster.jobs import plan_run
from streamer.cluster.options import ClusterConfig, Pin
from streamer.cluster.placement import ShardRef
from streamer.cluster.session import ClusterInfo, NodeInfo
from streamer.config import RunConfig
from streamer.outputs.options import OutputConfig


def _node(node_id: str, **resources: float) -> NodeInfo:
    return NodeInfo(node_id, "10.0.0.1", True, {"CPU": 1.0, **resources}, {})


def _run(pins: tuple[Pin, ...], nodes: list[NodeInfo], tmp_path) -> _ClusterRun:
    cluster = ClusterConfig("auto", pins=pins)
    outputs = OutputConfig(jsonl=str(tmp_path / "{stream}.jsonl"))
    config = RunConfig(
        input=("door=rtsp://cam/door", "yard=rtsp://cam/yard"), outputs=outputs, llm=None,
        cluster=cluster,
    )  # fmt: skip
    run = _ClusterRun(config, cluster, plan_run(config), ClusterInfo("auto", tuple(nodes)),
                      asyncio.Event(), progress=False)  # fmt: skip
    for node in nodes:  # each node's shard, started and ready (placement.refresh's work)
        run.placement._shards.append(ShardRef(f"shard-{node.node_id}", node, None, ready=True))
    run._launch = lambda job, shard: shard.jobs.update({job.key: job.live})  # no Ray call
    return run


def test_a_pinned_stream_without_its_node_is_said_to_wait_once(tmp_path, caplog):
    run = _run((Pin("door", resource="door-cam"),), [_node("head")], tmp_path)
    with caplog.at_level(logging.WARNING, logger="streamer"):
        waiting = run._start_live(run.waiting_live)
        waiting = run._start_live(waiting)  # the scheduler's next look: not said again
    assert [job.key for job in waiting] == ["door"]
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("stream door waits: no node of the cluster may run it (--pin door=")
    assert "a node with the resource door-cam (`ray start --resources '{\"door-cam\": 1}'`)" in line


def test_a_pinned_stream_whose_node_is_there_starts_without_a_word(tmp_path, caplog):
    nodes = [_node("head"), _node("porch", **{"door-cam": 1.0})]
    run = _run((Pin("door", resource="door-cam"),), nodes, tmp_path)
    with caplog.at_level(logging.WARNING, logger="streamer"):
        assert run._start_live(run.waiting_live) == []
    assert not caplog.records
    assert run.placement._shards[1].jobs == {"door": True}


def test_a_label_pin_names_the_label_to_start_a_node_with(tmp_path, caplog):
    run = _run((Pin("door", label=("zone", "lobby")),), [_node("head")], tmp_path)
    with caplog.at_level(logging.WARNING, logger="streamer"):
        run._start_live(run.waiting_live)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "a node with the label zone=lobby (`ray start --labels zone=lobby`)" in line
