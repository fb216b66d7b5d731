"""The web viewer's options: `ServeConfig` (`--serve`, `--serve-token`)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from streamer.core.checks import split_serve_address
from streamer.core.options import Option, option, validate
from streamer.errors import ConfigError

__all__ = ["LOCAL_HOST", "ServeConfig", "cannot_listen"]

LOCAL_HOST = "127.0.0.1"  # the viewer's default: this machine only


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """The web viewer (`--serve`).

    Attributes:
        host: address to bind; 127.0.0.1 (this machine only) unless told otherwise.
        port: TCP port; 0 picks a free one.
        token: when set, every route needs `Authorization: Bearer TOKEN` (or `?token=`).
        webrtc_stamp: draw a clock stamp into the frames the viewer serves (WebRTC and
            MJPEG; never into the files the run writes), which the page reads back as the
            glass-to-glass latency of each card.
    """

    host: str = LOCAL_HOST
    port: int = 8080
    token: str | None = option(
        None,
        Option("--serve-token", "require this token on every route of --serve: open the page "
               "as /?token=TOKEN, tools send 'Authorization: Bearer TOKEN' (a config file keeps "
               "it off the command line)", metavar="TOKEN", secret=True),
    )  # fmt: skip
    webrtc_stamp: bool = option(
        False,
        Option("--webrtc-stamp", "draw a clock stamp into the frames the viewer serves (not "
               "the files written); the page then shows each card's glass-to-glass latency "
               "(WebRTC and MJPEG)", kind="switch"),
    )  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)  # webrtc_stamp, a switch: True or False
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"serve port must be in 0..65535, got {self.port} (--serve)")
        if self.token is not None and not self.token.strip():
            raise ConfigError("--serve-token must not be empty; leave it out for no token")

    def check_free(self) -> None:
        """Refuse, before any work, an address nothing here can listen on now (a port in use,
        a host that is not this machine's): the viewer starts only once the model has loaded
        and the outputs are open.

        Raises:
            ConfigError: naming the address, why, and the fix.
        """
        if self.port == 0:
            return
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server
                probe.bind(address)
        except OSError as exc:
            raise ConfigError(cannot_listen(self, exc)) from exc

    @classmethod
    def at(cls, address: str, token: str | None = None) -> ServeConfig:
        """The viewer at `[HOST:]PORT` (`--serve`), HOST defaulting to this machine only."""
        try:
            host, port = split_serve_address(address, LOCAL_HOST)
        except ValueError as exc:
            raise ConfigError(f"--serve must be [HOST:]PORT, got {address!r}") from exc
        return cls(host=host, port=port, token=token)


def cannot_listen(config: ServeConfig, exc: OSError) -> str:
    """Why the viewer cannot listen at `config`'s address, and the fix."""
    return (f"web viewer: cannot listen on {config.host}:{config.port}: "
            f"{exc.strerror or exc}; choose another --serve port (0 picks a free one)")  # fmt: skip
