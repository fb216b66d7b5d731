"""How live sources connect, time out and reconnect: one frozen, validated value object."""

from __future__ import annotations

import math
from dataclasses import dataclass

from streamer.errors import ConfigError

__all__ = ["SourceOptions"]

_TRANSPORTS = ("tcp", "udp")


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """Connection settings shared by network and camera sources.

    Attributes:
        rtsp_transport: "tcp" (default: no loss, passes NAT and firewalls) or "udp".
        open_timeout: seconds to wait for a source to open (connect, handshake, first probe).
        read_timeout: seconds without a decoded frame before the source counts as stalled and
            is reopened.
        analyze_duration: seconds of a network stream FFmpeg may read at open to learn its
            parameters; short keeps opens and reconnects quick (RTSP's SDP already describes
            the stream).
        backoff_initial: first delay before a reconnect, seconds.
        backoff_cap: longest delay between reconnects, seconds.
        backoff_jitter: fraction of each delay that is random (0..1).
        max_attempts: consecutive failed attempts before giving up (status "failed");
            None retries forever, the default for cameras that may come back.
    """

    rtsp_transport: str = "tcp"
    open_timeout: float = 5.0
    read_timeout: float = 5.0
    analyze_duration: float = 0.5
    backoff_initial: float = 0.5
    backoff_cap: float = 10.0
    backoff_jitter: float = 0.25
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.rtsp_transport not in _TRANSPORTS:
            raise ConfigError(
                f"`rtsp_transport` must be one of {', '.join(_TRANSPORTS)}, "
                f"got {self.rtsp_transport!r}"
            )
        for field in ("open_timeout", "read_timeout", "analyze_duration", "backoff_initial"):
            _positive(field, getattr(self, field))
        _positive("backoff_cap", self.backoff_cap)
        if self.backoff_cap < self.backoff_initial:
            raise ConfigError(
                f"`backoff_cap` must be ≥ `backoff_initial` ({self.backoff_initial}), "
                f"got {self.backoff_cap}"
            )
        jitter = self.backoff_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise ConfigError(f"`backoff_jitter` must be a fraction in 0..1, got {jitter!r}")
        attempts = self.max_attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise ConfigError(
                f"`max_attempts` must be a whole number ≥ 1, or None for no limit, got {attempts!r}"
            )


def _positive(field: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"`{field}` must be a positive number of seconds, got {value!r}")
