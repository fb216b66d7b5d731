"""MQTT's options: `MqttConfig` (`--mqtt URL` and what it publishes), and the broker it names."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import socket
from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urlsplit

from encoders.extras import install_hint
from streamer.core.checks import Checked, float_at_least, int_at_least
from streamer.core.options import Option, option, validate
from streamer.core.redact import redact
from streamer.core.retry import RetryPolicy
from streamer.errors import ConfigError

__all__ = [
    "DEFAULT_RETRY",
    "PASSWORD_ENV",
    "Broker",
    "MqttConfig",
    "broker_url",
    "require_aiomqtt",
]

_GROUP = "mqtt"
_PORTS = {"mqtt": 1883, "mqtts": 8883}
# A topic level of our own: MQTT's wildcards and separator are not allowed in it.
_TOPIC = re.compile(r"[^/+#\s\x00]+(?:/[^/+#\s\x00]+)*")
PASSWORD_ENV = "STREAMER_MQTT_PASSWORD"
"""The broker's password when the URL names a user but no password: kept out of the command
line (the shell's history, `ps`) and of the files that hold the URL."""
DEFAULT_RETRY = RetryPolicy(initial=1.0, cap=30.0, jitter=0.25)
"""Reconnecting to the broker: 1 s doubling to 30 s, a quarter of each random, forever."""


@dataclass(frozen=True, slots=True)
class Broker:
    """Where `MqttConfig.url` points, taken apart (the password is never shown: `where`).

    Attributes:
        host, port: the broker's address (port 1883 for mqtt://, 8883 for mqtts://).
        tls: mqtts://: TLS, the server's certificate checked.
        username, password: from the URL's user part, None without one (never in the repr).
    """

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        """The broker as logs, errors and statuses show it: without credentials."""
        user = "***@" if self.username is not None else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def broker_url(text: str) -> Broker:
    """`mqtt[s]://[USER[:PASSWORD]@]HOST[:PORT]` taken apart; ValueError when it is not one."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as exc:  # a port out of range or not a number
        raise ValueError(redact(text)) from exc
    if scheme not in _PORTS or not parts.hostname or parts.path.strip("/") or parts.query:
        raise ValueError(redact(text))
    return Broker(
        host=parts.hostname,
        port=port or _PORTS[scheme],
        tls=scheme == "mqtts",
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def _url(text: str) -> str:
    broker_url(text)
    return text.strip()


def _topic(text: str) -> str:
    text = text.strip().strip("/")
    if not _TOPIC.fullmatch(text):
        raise ValueError(text)
    return text


def _client_id() -> str:
    """This process's client id: unique among the broker's clients (two with one id take turns
    throwing each other off)."""
    return f"streamer-{socket.gethostname()}-{os.getpid()}"[:64]


class _Unechoed(Checked[str]):
    """A check whose refusal shows the value with its credentials blanked (argparse would
    print the URL as typed, password and all)."""

    def __call__(self, text: str) -> str:
        try:
            return self.convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"must be {self.expected}, got {redact(text)!r}"
            ) from exc


URL_CHECK = _Unechoed(
    "an mqtt:// or mqtts:// URL with a host, e.g. mqtt://user:pass@host:1883 (in the user and "
    "password, write @ # / ? as %40 %23 %2F %3F)",
    _url,
)
TOPIC_CHECK = Checked("an MQTT topic without wildcards (+, #) or spaces, e.g. streamer", _topic)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Publishing the run's events to an MQTT broker, and Home Assistant discovery (`--mqtt`).

    Attributes:
        url: the broker, `mqtt://[USER[:PASSWORD]@]HOST[:PORT]` (`mqtts://` for TLS); a USER
            without a PASSWORD takes the password from `STREAMER_MQTT_PASSWORD` when it is set.
        prefix: the first level of every topic: `PREFIX/STREAM/caption`, `PREFIX/status`, ...
        discovery: publish Home Assistant discovery configs, so its entities appear by themselves.
        discovery_prefix: Home Assistant's discovery prefix (its MQTT setting; `homeassistant`).
        image_every_s: seconds between two pictures of a stream (the annotated frame as JPEG);
            0: none (frames are then never drawn for MQTT).
        status_every_s: seconds between two status messages of a stream (at once on a change
            of state).
        queue: messages held while the broker is away or slow; past it the oldest is dropped
            (counted). Status messages and pictures are not counted here: only the newest of
            each is held.
        client_id: the client id at the broker; None: `streamer-HOST-PID`.
        ca_file: a PEM file of the certificate authorities that sign the broker's certificate,
            for mqtts:// with a private CA; None: the system's.
        retry: the delays between connection attempts (the sources' backoff).
    """

    url: str
    prefix: str = option(
        "streamer",
        Option("--mqtt-prefix", "first level of every topic: PREFIX/STREAM/caption, "
               "PREFIX/STREAM/alert/NAME, PREFIX/STREAM/status, PREFIX/status (online/offline)",
               TOPIC_CHECK, metavar="TOPIC", group=_GROUP),
    )  # fmt: skip
    discovery: bool = option(
        True,
        Option("--no-mqtt-discovery", "do not publish Home Assistant discovery configs (the "
               "events are still published)", kind="negated", group=_GROUP),
    )  # fmt: skip
    discovery_prefix: str = option(
        "homeassistant",
        Option("--mqtt-discovery-prefix", "Home Assistant's MQTT discovery prefix",
               TOPIC_CHECK, metavar="TOPIC", group=_GROUP),
    )  # fmt: skip
    image_every_s: float = option(
        5.0,
        Option("--mqtt-image-every", "seconds between two annotated pictures of a stream "
               "(JPEG on PREFIX/STREAM/image, Home Assistant's image entity); 0: none",
               float_at_least(0, "seconds"), metavar="SECONDS", group=_GROUP),
    )  # fmt: skip
    status_every_s: float = option(
        10.0,
        Option("--mqtt-status-every", "seconds between two status messages of a stream (fps, "
               "latency, drops, state; at once when its state changes)",
               float_at_least(1, "seconds"), metavar="SECONDS", group=_GROUP),
    )  # fmt: skip
    queue: int = option(
        1000,
        Option("--mqtt-queue", "messages held while the broker is away; past it the oldest "
               "is dropped (counted in /metrics)", int_at_least(1), metavar="N", group=_GROUP),
    )  # fmt: skip
    client_id: str | None = option(
        None,
        Option("--mqtt-client-id", "the client id at the broker", metavar="ID", group=_GROUP,
               default_text="streamer-HOST-PID"),
    )  # fmt: skip
    ca_file: str | None = option(
        None,
        Option("--mqtt-ca", "PEM file of the authority that signed an mqtts:// broker's "
               "certificate (a private CA)", metavar="FILE", group=_GROUP,
               default_text="the system's"),
        path=True,
    )  # fmt: skip
    retry: RetryPolicy = DEFAULT_RETRY

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):
            raise ConfigError(f"mqtt url must be text, got {type(self.url).__name__} (--mqtt)")
        try:
            broker_url(self.url)
        except ValueError as exc:
            raise ConfigError(
                f"--mqtt must be {URL_CHECK.expected}, got {redact(self.url)!r}"
            ) from exc
        validate(self)
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"mqtt retry must be a RetryPolicy, got {self.retry!r}")
        if self.client_id is not None and not self.client_id.strip():
            raise ConfigError("--mqtt-client-id must not be empty; leave it out for the default")
        if self.ca_file is not None and not broker_url(self.url).tls:
            raise ConfigError("--mqtt-ca is for TLS: give an mqtts:// URL, or leave out --mqtt-ca")

    @property
    def broker(self) -> Broker:
        """The broker `url` names; a user without a password there gets `PASSWORD_ENV`'s, when
        that is set (read at each connection: the URL, and so `config --print`, never holds it)."""
        broker = broker_url(self.url)
        if broker.username is not None and broker.password is None:
            password = os.environ.get(PASSWORD_ENV)
            if password is not None:
                return replace(broker, password=password)
        return broker

    @property
    def client(self) -> str:
        """The client id to connect with."""
        return self.client_id or _client_id()


def require_aiomqtt() -> None:
    """Refuse `--mqtt` where aiomqtt is not installed: a run calls it before its model loads.

    Raises:
        ConfigError: naming the package and its install command.
    """
    if importlib.util.find_spec("aiomqtt") is None:
        raise ConfigError(f"--mqtt needs the aiomqtt package: {install_hint('mqtt')}")
