"""The cluster's options: `ClusterConfig` (`--cluster ADDRESS` and how the run spreads) and `Pin`.

Nothing here imports Ray: a run's configuration is made and checked on a machine that may
not have the `cluster` extra, and `streamer config --print` never needs it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from streamer.core.checks import Checked, float_above, int_at_least
from streamer.core.options import Option, option, validate
from streamer.errors import ConfigError

__all__ = [
    "AUTO",
    "ClusterConfig",
    "Node",
    "Pin",
    "cluster_address",
    "pin_text",
    "split_cluster_address",
]


class Node(Protocol):
    """What a pin looks at of a node (`streamer.cluster.session.NodeInfo` is one)."""

    @property
    def resources(self) -> Mapping[str, float]: ...

    @property
    def labels(self) -> Mapping[str, str]: ...


#: The address that means "the cluster `ray start` made on this machine (or RAY_ADDRESS)".
AUTO = "auto"
#: How Ray Client addresses start; any other host:port is the head's GCS.
RAY_CLIENT = "ray://"

_GROUP = "cluster"
_ADDRESS_FORMS = (
    "auto, ray://HOST:PORT (Ray Client, e.g. ray://head:10001) or HOST:PORT (the head node, "
    "e.g. head:6379)"
)
_NO_SPACE = re.compile(r"\S+")


def _is_name(value: object) -> bool:
    """A non-empty text without blanks (a stream name, a resource, a label's key or value)."""
    return isinstance(value, str) and _NO_SPACE.fullmatch(value) is not None


def split_cluster_address(text: str) -> tuple[str, str, int] | None:
    """`ray://HOST:PORT` or `HOST:PORT` → (scheme, host, port); None for `auto`.

    The scheme is "ray://" for Ray Client, "" for the head's GCS; an IPv6 host goes in
    brackets (`[::1]:6379`).

    Raises:
        ValueError: `text` is none of the three forms, or its port is not in 1..65535.
    """
    text = text.strip()
    if text.lower() == AUTO:
        return None
    scheme = RAY_CLIENT if text.lower().startswith(RAY_CLIENT) else ""
    rest = text[len(scheme) :]
    bracketed = re.fullmatch(r"\[([^\]]+)\]:(\d+)", rest)
    if bracketed:
        host, port = bracketed.groups()
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:
        raise ValueError(text)
    if not _is_name(host) or "/" in host:
        raise ValueError(text)
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(text)
    return scheme, host, int(port)


def cluster_address() -> Checked[str]:
    """`--cluster ADDRESS`, checked; kept as typed (`auto` in lower case)."""

    def convert(text: str) -> str:
        return AUTO if split_cluster_address(text) is None else text

    return Checked(_ADDRESS_FORMS, convert)


@dataclass(frozen=True, slots=True)
class Pin:
    """A stream that must run on one node (`--pin STREAM=NODE`).

    Exactly one of `resource` and `label` is set.

    Attributes:
        stream: the stream's name (as the run names its inputs: `door=rtsp://...` is `door`).
        resource: a custom Ray resource that only the wanted node has (`ray start --resources
            '{"door-cam": 1}'`).
        label: a Ray node label (KEY, VALUE) (`ray start --labels zone=lobby`).
    """

    stream: str
    resource: str | None = None
    label: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if not _is_name(self.stream):
            raise ConfigError(f"a pin's stream must be a stream name, got {self.stream!r} (--pin)")
        if (self.resource is None) == (self.label is None):
            raise ConfigError(
                f"pin of {self.stream!r} needs exactly one of a resource and a label, got "
                f"resource={self.resource!r}, label={self.label!r} (--pin)"
            )
        if self.resource is not None and not _is_name(self.resource):
            raise ConfigError(f"pin of {self.stream!r}: bad resource name {self.resource!r}")
        if self.label is not None:
            if not (len(self.label) == 2 and all(_is_name(part) for part in self.label)):
                raise ConfigError(f"pin of {self.stream!r}: a label is (KEY, VALUE), got "
                                  f"{self.label!r}")  # fmt: skip
            object.__setattr__(self, "label", tuple(self.label))

    @classmethod
    def parse(cls, text: str) -> Pin:
        """`STREAM=NODE` (a custom resource) or `STREAM=KEY=VALUE` (a node label) → a Pin.

        The part before the first '=' is the stream's name.

        Raises:
            ConfigError: naming the value and the two forms it may take.
        """
        stream, _, node = str(text).strip().partition("=")
        key, is_label, value = node.partition("=")
        try:
            if is_label:
                return cls(stream.strip(), label=(key.strip(), value.strip()))
            return cls(stream.strip(), resource=node.strip())
        except ConfigError as exc:
            raise ConfigError(
                f"--pin {text!r}: must be STREAM=RESOURCE (the node started with `ray start "
                "--resources '{\"RESOURCE\": 1}'`) or STREAM=KEY=VALUE (the node started with "
                "`ray start --labels KEY=VALUE`)"
            ) from exc

    def matches(self, node: Node) -> bool:
        """Whether `node` is a node this pin allows: it has the resource, or the label."""
        if self.resource is not None:
            return node.resources.get(self.resource, 0) > 0
        assert self.label is not None
        key, value = self.label
        return node.labels.get(key) == value

    def wanted(self) -> str:
        """The node this pin waits for, with how to start one: "a node with the resource
        door-cam (`ray start --resources '{"door-cam": 1}'`)"."""
        if self.resource is not None:
            return (f"a node with the resource {self.resource} (`ray start --resources "
                    f"'{{\"{self.resource}\": 1}}'`)")  # fmt: skip
        assert self.label is not None
        label = "=".join(self.label)
        return f"a node with the label {label} (`ray start --labels {label}`)"

    def __str__(self) -> str:
        """The pin as `--pin` takes it."""
        node = self.resource if self.label is None else "=".join(self.label)
        return f"{self.stream}={node}"


def pin_text() -> Checked[str]:
    """`--pin STREAM=NODE` or `STREAM=KEY=VALUE`, checked; the text as `--pin` takes it (the
    config dataclass makes the `Pin`)."""

    def convert(text: str) -> str:
        try:
            return str(Pin.parse(text))
        except ConfigError as exc:
            raise ValueError(text) from exc

    return Checked("STREAM=RESOURCE or STREAM=KEY=VALUE (a Ray node label)", convert)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A run spread over a Ray cluster (`--cluster ADDRESS`).

    Attributes:
        address: `auto` (the cluster `ray start` made on this machine, or RAY_ADDRESS),
            `ray://HOST:PORT` (Ray Client) or `HOST:PORT` (the head node's GCS).
        encoders: encoder replicas in the pool: one GPU each where the cluster has GPUs,
            else `encoder_cpus` CPUs each.
        encoder_cpus: CPUs a replica reserves where it runs on the CPU; it runs this many
            torch threads (rounded down, at least 1).
        shards_per_node: shard actors per node; each runs its share of the streams.
        in_flight: frames one shard may have at the encoder pool at once; past it, live
            streams drop their oldest frame (counted) and files wait.
        files_per_shard: files one shard works on at once (the rest wait in the work queue).
        pins: streams that must run on a given node (`Pin`); strings `STREAM=NODE` are
            accepted and parsed. Other streams go where there is least load.
    """

    address: str
    encoders: int = option(
        1,
        Option("--encoders", "encoder replicas: one GPU each where the cluster has GPUs, else "
               "--encoder-cpus CPUs each", int_at_least(1), metavar="N", group=_GROUP),
    )  # fmt: skip
    encoder_cpus: float = option(
        1.0,
        Option("--encoder-cpus", "CPUs each replica reserves where it runs on the CPU (and the "
               "torch threads it runs, rounded down)", float_above(0, "CPUs"), metavar="N",
               group=_GROUP),
    )  # fmt: skip
    shards_per_node: int = option(
        1,
        Option("--shards-per-node", "shard actors per node, each running its share of the "
               "streams", int_at_least(1), metavar="N", group=_GROUP),
    )  # fmt: skip
    in_flight: int = option(
        16,
        Option("--in-flight", "frames one shard may have at the encoders at once; past it "
               "live streams drop their oldest frame (counted) and files wait", int_at_least(1),
               metavar="N", group=_GROUP),
    )  # fmt: skip
    files_per_shard: int = option(
        2,
        Option("--files-per-shard", "files one shard works on at once; the rest wait in the "
               "work queue", int_at_least(1), metavar="N", group=_GROUP),
    )  # fmt: skip
    pins: tuple[Pin, ...] = option(
        (),
        Option("--pin", "run stream STREAM on the node with Ray resource NODE (`ray start "
               "--resources '{\"NODE\": 1}'`) or, as STREAM=KEY=VALUE, on the node with that "
               "label (`ray start --labels KEY=VALUE`); repeatable", pin_text(), kind="list",
               metavar="STREAM=NODE", group=_GROUP),
    )  # fmt: skip

    def __post_init__(self) -> None:
        try:
            address = cluster_address().convert(self.address)
        except ValueError as exc:
            raise ConfigError(
                f"cluster address must be {_ADDRESS_FORMS}, got {self.address!r} (--cluster)"
            ) from exc
        object.__setattr__(self, "address", address)
        if isinstance(self.pins, str | Pin):
            raise ConfigError(f"pins must be a tuple of Pin or STREAM=NODE, got {self.pins!r}")
        # As text, the pins go through --pin's own check with the other options' values ...
        texts = tuple(str(p) if isinstance(p, Pin) else p for p in self.pins)
        object.__setattr__(self, "pins", texts)
        validate(self)
        # ... and are kept as Pins.
        object.__setattr__(self, "pins", self._parsed_pins())

    def _parsed_pins(self) -> tuple[Pin, ...]:
        pins = tuple(Pin.parse(text) for text in self.pins)
        seen: dict[str, Pin] = {}
        for pin in pins:
            if pin.stream in seen:
                raise ConfigError(
                    f"--pin {pin} and --pin {seen[pin.stream]} both pin stream {pin.stream!r}: "
                    "a stream runs on one node; keep one"
                )
            seen[pin.stream] = pin
        return pins

    @property
    def torch_threads(self) -> int:
        """Torch threads a replica on the CPU runs: `encoder_cpus` rounded down, at least 1."""
        return max(1, int(self.encoder_cpus))

    def pin_of(self, stream: str) -> Pin | None:
        """The pin of stream `stream`, None when it may run anywhere."""
        return next((pin for pin in self.pins if pin.stream == stream), None)
