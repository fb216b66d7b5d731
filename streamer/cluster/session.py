"""Joining a Ray cluster: `connect`, what it holds (`ClusterInfo`, `NodeInfo`), `disconnect`.

This is the one module that imports Ray for the run's driver, and only inside `connect`: Ray is
the `cluster` extra (`encoders.extras.install_hint("cluster")`), and a run without `--cluster` never
loads it.

Before Ray is asked to join, the address is checked the cheap way: its TCP port must answer
within a few seconds, and answer an HTTP/2 hello as a gRPC server does. Ray itself retries an
unreachable head, or a port that is not Ray's, for a minute or more and logs each attempt; a
user who typed the wrong address should hear so at once, in one line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from encoders.extras import install_hint
from streamer.cluster.options import AUTO, ClusterConfig, split_cluster_address
from streamer.errors import ClusterError, ClusterUnavailableError, ConfigError

__all__ = ["ClusterInfo", "NodeInfo", "connect", "disconnect", "nodes"]

log = logging.getLogger("streamer.cluster")

#: Seconds the address's port has to accept a TCP connection before the cluster counts as
#: unreachable.
REACH_TIMEOUT_S = 3.0
#: The namespace every actor of a run lives in (named actors of two runs do not meet).
NAMESPACE = "streamer"

_START = (
    "start one with `ray start --head` on the head machine (and `ray start --address "
    "HEAD:6379` on each of the others), or give --cluster the head's address"
)
_connected_here = False  # connect() started Ray in this process: disconnect() shuts it down


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node of the cluster, as Ray lists it.

    Attributes:
        node_id: Ray's node id (hex).
        host: the node's IP address (Ray's NodeManagerAddress).
        alive: whether Ray counts it alive.
        resources: its total resources (`CPU`, `GPU`, `memory`, custom ones such as a pin's).
        labels: its Ray labels (`ray start --labels KEY=VALUE`, plus Ray's own `ray.io/...`).
    """

    node_id: str
    host: str
    alive: bool
    resources: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def cpus(self) -> float:
        """The node's CPUs (Ray's `CPU` resource)."""
        return float(self.resources.get("CPU", 0.0))

    @property
    def gpus(self) -> float:
        """The node's GPUs (Ray's `GPU` resource)."""
        return float(self.resources.get("GPU", 0.0))

    @classmethod
    def from_ray(cls, entry: dict[str, Any]) -> NodeInfo:
        """A node from one entry of `ray.nodes()`."""
        return cls(
            node_id=str(entry["NodeID"]),
            host=str(entry.get("NodeManagerAddress", "")),
            alive=bool(entry.get("Alive", False)),
            resources={str(k): float(v) for k, v in (entry.get("Resources") or {}).items()},
            labels={str(k): str(v) for k, v in (entry.get("Labels") or {}).items()},
        )


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """The cluster a run joined.

    Attributes:
        address: the address as given (`auto`, `ray://head:10001`, `head:6379`).
        nodes: its alive nodes when it was joined.
    """

    address: str
    nodes: tuple[NodeInfo, ...]

    @property
    def cpus(self) -> float:
        """CPUs of the alive nodes, together."""
        return sum(node.cpus for node in self.nodes)

    @property
    def gpus(self) -> float:
        """GPUs of the alive nodes, together."""
        return sum(node.gpus for node in self.nodes)

    def describe(self) -> str:
        """One line for the log: "cluster at head:6379: 3 nodes, 6 CPUs, 0 GPUs"."""
        count = len(self.nodes)
        return (
            f"cluster at {self.address}: {count} node{'s' if count != 1 else ''}, "
            f"{self.cpus:g} CPUs, {self.gpus:g} GPUs"
        )


def connect(config: ClusterConfig) -> ClusterInfo:
    """Join the Ray cluster at `config.address` (or use the one this process already joined).

    Blocking (Ray's own connect is); an async caller runs it in a thread.

    Args:
        config: the run's cluster options.

    Returns:
        The cluster: its alive nodes and what they hold.

    Raises:
        ConfigError: Ray is not installed here (the message says how to install it).
        ClusterUnavailableError: no cluster answers at the address, none was started on this
            machine for `auto`, or Ray refused to join (its reason in one line).
    """
    global _connected_here
    ray = _import_ray()
    if ray.is_initialized():  # a caller (a test, a notebook) joined already: use that
        log.debug("Ray is initialised in this process already; using its cluster")
        return ClusterInfo(config.address, tuple(nodes()))
    target = _resolve(config.address, ray)
    _check_reachable(target, given=config.address)
    with _sigterm_kept():
        try:
            ray.init(
                address=target,
                namespace=NAMESPACE,
                logging_level=logging.WARNING,
                log_to_driver=True,
            )
        except Exception as exc:  # Ray raises bare exceptions of many kinds here
            raise ClusterUnavailableError(
                f"cannot join the Ray cluster at {_named(target, config.address)}: {_one_line(exc)}"
            ) from exc
    _connected_here = True
    return ClusterInfo(config.address, tuple(nodes()))


def disconnect() -> None:
    """Leave the cluster, if `connect` joined it (a cluster joined by the caller is left
    alone). The cluster itself keeps running."""
    global _connected_here
    if not _connected_here:
        return
    import ray

    ray.shutdown()
    _connected_here = False


def nodes(*, include_dead: bool = False) -> list[NodeInfo]:
    """The cluster's nodes: the alive ones, then (with `include_dead`) the dead ones.

    Ray keeps listing a node after it died; a node that comes back is a new node id.

    Raises:
        ClusterError: this process has not joined a cluster (call `connect` first).
    """
    ray = _import_ray()
    if not ray.is_initialized():
        raise ClusterError("not connected to a Ray cluster: call connect(config) first")
    listed = [NodeInfo.from_ray(entry) for entry in ray.nodes()]
    alive = [node for node in listed if node.alive]
    return alive + [node for node in listed if not node.alive] if include_dead else alive


# --- helpers ------------------------------------------------------------------------------------


def _import_ray() -> Any:
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(
            f"--cluster needs Ray, which is not installed here: {install_hint('cluster')} (on "
            "every machine of the cluster, with the same Ray and Python versions)"
        )
    import ray

    return ray


def _resolve(address: str, ray: Any) -> str:
    """The address to join: `auto` → RAY_ADDRESS, else the cluster `ray start` made here.

    Unlike Ray's own `auto`, this does not fall back to any Ray process it finds running on
    the machine: that could be another user's cluster or a test's, and joining it by surprise
    is worse than saying there is none.
    """
    if address != AUTO:
        return address
    # Ray's own variable for "auto", read here because Ray would read it at ray.init anyway.
    from_env = os.environ.get("RAY_ADDRESS", "").strip()
    if from_env and from_env != AUTO:
        return from_env
    recorded = _recorded_address(ray)
    if not recorded:
        raise ClusterUnavailableError(
            "--cluster auto: no Ray cluster was started on this machine (no `ray start "
            f"--head` here) and RAY_ADDRESS is not set. Fix: {_START} (HOST:6379), or set "
            "RAY_ADDRESS"
        )
    return recorded


def _recorded_address(ray: Any) -> str | None:
    """The head address the last `ray start` on this machine wrote down, if any."""
    reader = getattr(getattr(ray, "_private", None), "utils", None)
    read = getattr(reader, "read_ray_address", None)
    if read is None:  # a Ray that moved it: let Ray resolve "auto" itself
        return AUTO
    return read()


def _check_reachable(target: str, *, given: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Raise ClusterUnavailableError unless `target`'s TCP port accepts a connection."""
    if target == AUTO:
        return
    try:
        parts = split_cluster_address(target)
    except ValueError as exc:  # RAY_ADDRESS, or Ray's file, held something odd
        raise ClusterUnavailableError(
            f"--cluster {given}: {target!r} is not a Ray address (HOST:PORT or ray://HOST:PORT)"
        ) from exc
    assert parts is not None
    _scheme, host, port = parts
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            # A cluster with TLS (Ray's RAY_USE_TLS) answers no plain HTTP/2 hello.
            speaks_grpc = _uses_tls() or _speaks_grpc(sock)
    except OSError as exc:
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {timeout_s:g} s"
        else:
            reason = (exc.strerror or str(exc)).lower()
        raise ClusterUnavailableError(
            f"no Ray cluster answers at {_named(target, given)} ({reason}). Fix: {_START}"
        ) from exc
    if not speaks_grpc:
        raise ClusterUnavailableError(
            f"something answers at {_named(target, given)}, but not Ray (no gRPC): is it the "
            "right port? A head listens on 6379 unless `ray start --head --port` said otherwise, "
            "Ray Client on 10001"
        )


def _uses_tls() -> bool:
    return os.environ.get("RAY_USE_TLS", "0").strip().lower() in ("1", "true")


#: What an HTTP/2 client sends first: the connection preface, then its (empty) SETTINGS frame.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _speaks_grpc(sock: socket.socket) -> bool:
    """Whether the server on `sock` answers an HTTP/2 hello with its SETTINGS frame, as every
    gRPC server (Ray's GCS, Ray Client) does at once. Ray, given a port that is open but not
    its own, retries for minutes and logs every attempt."""
    try:
        sock.sendall(_HTTP2_HELLO)
        header = b""
        while len(header) < 9:  # a frame header: length (3), type (1), flags (1), stream (4)
            chunk = sock.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    except TimeoutError:
        return False
    return header[3] == 4  # type 4: SETTINGS


def _named(target: str, given: str) -> str:
    return target if target == given else f"{target} (--cluster {given})"


def _one_line(exc: BaseException) -> str:
    """Ray's reason on one line: its lines joined (a version mismatch gives the versions on
    the lines after "The cluster was started with:"), cut at 400 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines) if lines else type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """Keep this process's SIGTERM handler across `ray.init`, which installs its own (one that
    exits at once) and so would take away the run's graceful stop on SIGTERM.

    Outside the main thread (an async driver joins from a worker thread) Ray installs nothing
    and warns that it did not: that warning is left out, the run's own handler is in place.

    Ray's core worker also installs a crash handler (absl's) for SIGTERM among the fatal
    signals: it dumps a stack and aborts after the run's handler (exit 134, a "crash" to
    systemd and `docker stop`). The driver does without it, as Ray lets one
    (`RAY_DISABLE_FAILURE_SIGNAL_HANDLER`, read when the core worker starts).
    """
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and hasattr(constants, "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"):
        constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    if threading.current_thread() is not threading.main_thread():
        ray_worker = logging.getLogger("ray._private.worker")
        ray_worker.addFilter(_no_sigterm_warning)
        try:
            yield
        finally:
            ray_worker.removeFilter(_no_sigterm_warning)
        return
    saved = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if saved is not None:  # None: a handler not set from Python, nothing to put back
            signal.signal(signal.SIGTERM, saved)


def _no_sigterm_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("SIGTERM handler is not set")
