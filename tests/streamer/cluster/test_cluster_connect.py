"""Joining a real simulated Ray cluster (`ray.cluster_utils.Cluster`: two nodes on this machine,
each with its own resources and labels), and being told at once when there is none to join."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_helpers import SilentServer

from streamer.cluster import ClusterConfig, ClusterInfo, Pin, connect, nodes
from streamer.cluster.session import disconnect

REPO = Path(__file__).resolve().parents[3]


# --- no cluster to join: each in its own process, as a user meets it -----------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def streamer_run(tmp_path: Path, address: str, **env: str) -> subprocess.CompletedProcess:
    """`streamer run --cluster ADDRESS clip.mp4 --jsonl out.jsonl` as a user runs it (clip.mp4
    exists but is never opened: the cluster is joined before any input is)."""
    (tmp_path / "clip.mp4").touch()  # the driver checks a file input is there before joining
    return subprocess.run(
        [sys.executable, "-m", "streamer", "run", "--cluster", address, "clip.mp4",
         "--jsonl", str(tmp_path / "out.jsonl")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamer: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert all(word in lines[0] for word in words), lines[0]


@pytest.mark.integration
def test_run_with_an_unreachable_cluster_exits_1_in_one_line(tmp_path):
    port = free_port()
    started = time.monotonic()
    proc = streamer_run(tmp_path, f"127.0.0.1:{port}")
    assert time.monotonic() - started < 15
    assert_one_line_error(proc, f"127.0.0.1:{port}", "ray start --head")
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.integration
def test_run_with_auto_and_no_cluster_on_this_machine_exits_1_in_one_line(tmp_path):
    # Ray finds "auto" through RAY_ADDRESS, then the file `ray start` leaves in its temp
    # folder: an empty RAY_ADDRESS and a fresh temp folder hide any cluster of another test.
    ray_tmp = tmp_path / "ray-tmp"
    ray_tmp.mkdir()
    started = time.monotonic()
    proc = streamer_run(tmp_path, "auto", RAY_ADDRESS="", RAY_TMPDIR=str(ray_tmp))
    assert time.monotonic() - started < 15
    assert_one_line_error(proc, "--cluster auto", "ray start --head", "RAY_ADDRESS")


@pytest.mark.integration
def test_auto_with_a_stale_address_file_names_both(tmp_path):
    # A head that `ray start` recorded, then died without `ray stop`: the file outlives it.
    ray_tmp = tmp_path / "ray-tmp"
    (ray_tmp / "ray").mkdir(parents=True)
    port = free_port()
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    proc = streamer_run(tmp_path, "auto", RAY_ADDRESS="", RAY_TMPDIR=str(ray_tmp))
    assert_one_line_error(proc, f"127.0.0.1:{port} (--cluster auto)", "connection refused")


@pytest.mark.integration
def test_run_with_a_port_that_is_open_but_not_ray_exits_1_within_seconds(tmp_path):
    # Ray would retry such a port for minutes, logging every attempt.
    server = SilentServer()
    try:
        started = time.monotonic()
        proc = streamer_run(tmp_path, f"127.0.0.1:{server.port}")
        assert time.monotonic() - started < 15
    finally:
        server.close()
    assert_one_line_error(proc, f"127.0.0.1:{server.port}", "but not Ray", "right port")


def test_nodes_without_a_cluster_says_to_connect_first():
    code = (
        "from streamer.cluster import nodes\nfrom streamer.errors import ClusterError\n"
        "try:\n    nodes()\nexcept ClusterError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert "call connect(config) first" in out


# --- a simulated cluster of two nodes -----------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """A head with 1 CPU and resource `a`, a worker with 1 CPU, resource `b`, label zone=x."""
    from ray.cluster_utils import Cluster

    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"a": 1}})
    try:
        made.add_node(num_cpus=1, resources={"b": 1}, labels={"zone": "x"})
        yield made
    finally:
        made.shutdown()


@pytest.fixture(scope="module")
def joined(cluster) -> Iterator[ClusterInfo]:
    """This process joined to the cluster through `connect`, left at the end."""
    handler = signal.getsignal(signal.SIGTERM)
    info = connect(ClusterConfig(cluster.address))
    # ray.init installs a SIGTERM handler that exits at once; the run's graceful stop stays
    assert signal.getsignal(signal.SIGTERM) is handler
    try:
        yield info
    finally:
        disconnect()


@pytest.mark.cluster
@pytest.mark.slow
def test_connect_sees_both_nodes_with_their_resources_and_labels(cluster, joined):
    assert joined.address == cluster.address
    assert len(joined.nodes) == 2 and all(node.alive for node in joined.nodes)
    assert joined.cpus == 2 and joined.gpus == 0
    assert joined.describe() == f"cluster at {cluster.address}: 2 nodes, 2 CPUs, 0 GPUs"
    by_resource = {name: n for n in joined.nodes for name in ("a", "b") if name in n.resources}
    assert by_resource["a"].labels.get("zone") is None
    assert by_resource["b"].labels["zone"] == "x" and by_resource["b"].cpus == 1
    assert by_resource["a"].node_id != by_resource["b"].node_id
    assert {n.node_id for n in nodes()} == {n.node_id for n in joined.nodes}


@pytest.mark.cluster
@pytest.mark.slow
def test_pins_match_the_nodes_that_have_their_resource_or_label(joined):
    def matching(pin: Pin) -> list[str]:
        return [n.node_id for n in joined.nodes if pin.matches(n)]

    head = next(n for n in joined.nodes if "a" in n.resources)
    worker = next(n for n in joined.nodes if "b" in n.resources)
    assert matching(Pin.parse("door=a")) == [head.node_id]
    assert matching(Pin.parse("yard=b")) == [worker.node_id]
    assert matching(Pin.parse("yard=zone=x")) == [worker.node_id]
    assert matching(Pin.parse("yard=zone=y")) == []
    assert matching(Pin.parse("yard=c")) == []


@pytest.mark.cluster
@pytest.mark.slow
def test_connect_again_uses_the_ray_this_process_joined(cluster, joined):
    import ray

    again = connect(ClusterConfig(cluster.address))
    assert ray.is_initialized()
    assert {n.node_id for n in again.nodes} == {n.node_id for n in joined.nodes}


def test_ray_s_reason_keeps_its_later_lines():
    # Ray's version mismatch puts the versions on the lines after its first: the message had
    # "Version mismatch: The cluster was started with:" and nothing more.
    from streamer.cluster.session import _one_line

    reason = RuntimeError("Version mismatch: The cluster was started with:\n    Ray: 2.60.0\n"
                          "    Python: 3.11.7\nThis process was started with:\n    Ray: 2.60.0\n"
                          "    Python: 3.11.2\n")  # fmt: skip
    line = _one_line(reason)
    assert "\n" not in line and "Python: 3.11.7" in line and "Python: 3.11.2" in line
    assert len(_one_line(RuntimeError("x" * 1000))) == 400
