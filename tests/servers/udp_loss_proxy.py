"""An RTSP proxy that loses UDP datagrams the way a network does, for the packet-loss tests.

It sits between an RTSP client (streamer) and a real RTSP server (`bench/harness/rtsp_server.py`)::

    client ──RTSP/TCP──► proxy ──RTSP/TCP──► server
    client ◄──RTP/UDP─── proxy ◄──RTP/UDP─── server     (server→client RTP: dropped with P)
    client ───RTCP/UDP─► proxy ───RTCP/UDP─► server     (both ways: dropped with rtcp_loss)

Why a proxy and not the server's `lossy:P` mount: that mount drops whole *encoded frames*
before they are packetised, so every RTP packet the client gets is intact and in sequence. A
network drops *datagrams*: pictures arrive with slices or FU-A fragments missing, the RTP
sequence numbers have gaps, and RTCP reports go missing too. Only a relay of the datagrams
themselves makes that.

What it does:

- forwards the RTSP control connection both ways, rewriting what names an address: the
  request URLs and headers name the upstream server (so the server may answer with its own
  host:port), answers name the proxy again (`Content-Base`, `RTP-Info`, SDP `a=control:`),
  with `Content-Length` fixed when a body changes. `Authorization` is left alone, since a
  Digest response is computed over the URI the client sent;
- rewrites the `Transport:` of SETUP requests and answers for unicast UDP, so RTP and RTCP of
  each track flow through four sockets the proxy owns: a pair facing the server (its
  `client_port`) and a pair facing the client (its `server_port`);
- relays datagrams both ways, dropping server→client RTP datagrams with probability `loss`
  (optionally in bursts of `burst` consecutive datagrams) from a seeded generator per track,
  so a run is reproducible; counts what it relayed and dropped (`LossCounters`);
- passes RTP interleaved in the TCP connection (`rtsp_transport=tcp`) through untouched, and
  multicast transports too (they are not relayed).

Several clients and several tracks per client work at once. A track's sockets close with its
session's TEARDOWN or with the client's connection; `stop()` closes everything.

In a test, run it on its own event loop (`ProxyThread`), so the relay never waits behind the
pipeline's loop. Standalone, with the project's Python (standard library only)::

    python tests/servers/udp_loss_proxy.py --listen 8555 --upstream 127.0.0.1:8554 \
        --loss 0.05 --seed 1

prints "READY" once it listens, runs until interrupted, then prints its counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import random
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable

RECEIVE_BUFFER = 4 * 1024 * 1024  # a loaded test machine must not make losses of its own
_MAX_HEAD = 64 * 1024


@dataclasses.dataclass
class LossCounters:
    """What the proxy saw, for the tests to check that the loss was real.

    Attributes:
        rtp_relayed: server→client RTP datagrams passed on.
        rtp_dropped: server→client RTP datagrams dropped on purpose.
        rtcp_relayed: RTCP datagrams passed on, both ways.
        rtcp_dropped: RTCP datagrams dropped on purpose, both ways.
        client_rtp: client→server datagrams on RTP ports (FFmpeg's NAT "punch" packets).
        udp_setups: SETUPs whose UDP transport the proxy took over.
        other_setups: SETUPs passed through untouched (interleaved TCP, multicast).
        interleaved: `$`-framed packets passed through the TCP connections, both ways.
        connections: RTSP client connections accepted.
    """

    rtp_relayed: int = 0
    rtp_dropped: int = 0
    rtcp_relayed: int = 0
    rtcp_dropped: int = 0
    client_rtp: int = 0
    udp_setups: int = 0
    other_setups: int = 0
    interleaved: int = 0
    connections: int = 0


class LossModel:
    """Which datagrams a lossy link drops: each datagram starts a run of `burst` lost
    datagrams with probability `probability` (`burst=1`: independent losses). Seeded, so the
    same stream of datagrams loses the same ones every run."""

    def __init__(self, probability: float, burst: int = 1, seed: int | str = 0) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"loss probability must be from 0 to 1, got {probability!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1 datagram, got {burst!r}")
        self.probability = probability
        self.burst = burst
        self._random = random.Random(seed)
        self._left = 0  # datagrams still to drop in the current burst

    def drop(self) -> bool:
        """Whether the next datagram is lost."""
        if self._left:
            self._left -= 1
            return True
        if self._random.random() < self.probability:
            self._left = self.burst - 1
            return True
        return False


# ---------------------------------------------------------------------------------------------
# RTSP messages: parsing just enough to rewrite addresses and transports.


@dataclasses.dataclass
class RtspMessage:
    """One RTSP request or answer: its first line, headers in order, and body."""

    start: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("RTSP/")

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0].upper() if self.is_request else ""

    @property
    def status(self) -> int:
        parts = self.start.split()
        return int(parts[1]) if not self.is_request and len(parts) > 1 else 0

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def set_header(self, name: str, value: str) -> None:
        for i, (key, _) in enumerate(self.headers):
            if key.lower() == name.lower():
                self.headers[i] = (key, value)
                return
        self.headers.append((name, value))

    def encode(self) -> bytes:
        if self.body or self.header("Content-Length") is not None:
            self.set_header("Content-Length", str(len(self.body)))
        lines = [self.start, *(f"{k}: {v}" for k, v in self.headers), "", ""]
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    @classmethod
    def parse_head(cls, head: bytes) -> RtspMessage:
        """A message from its head (the bytes up to and including the blank line)."""
        lines = head.decode("utf-8", "surrogateescape").split("\r\n")
        headers = []
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                headers.append((key.strip(), value.strip()))
        return cls(lines[0], headers)

    def rewrite_addresses(self, old: str, new: str) -> None:
        """Replace the authority `old` ("host:port") by `new` in URLs of the first line,
        the headers (not `Authorization`) and the body."""
        pattern = re.compile(rf"(?i)(rtsps?://(?:[^/@\s]*@)?){re.escape(old)}(?=[/\s;,\"]|$)")
        swap = rf"\g<1>{new}"
        self.start = pattern.sub(swap, self.start)
        self.headers = [
            (k, v if k.lower() in ("authorization", "transport") else pattern.sub(swap, v))
            for k, v in self.headers
        ]
        if self.body:
            text = self.body.decode("utf-8", "surrogateescape")
            self.body = pattern.sub(swap, text).encode("utf-8", "surrogateescape")


@dataclasses.dataclass
class TransportSpec:
    """One transport of a `Transport:` header, e.g. `RTP/AVP;unicast;client_port=5000-5001`."""

    protocol: str
    params: list[tuple[str, str | None]]

    @classmethod
    def parse_header(cls, value: str) -> list[TransportSpec]:
        specs = []
        for text in value.split(","):
            protocol, *rest = (part.strip() for part in text.split(";"))
            params = []
            for part in rest:
                key, eq, val = part.partition("=")
                params.append((key.strip(), val if eq else None))
            specs.append(cls(protocol, params))
        return specs

    @staticmethod
    def format_header(specs: list[TransportSpec]) -> str:
        return ",".join(spec.format() for spec in specs)

    def format(self) -> str:
        parts = [self.protocol, *(k if v is None else f"{k}={v}" for k, v in self.params)]
        return ";".join(parts)

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.params if k.lower() == key), None)

    def has(self, key: str) -> bool:
        return any(k.lower() == key for k, _ in self.params)

    def put(self, key: str, value: str) -> None:
        """Set `key` to `value`, in place if it is there, else at the end."""
        for i, (k, _) in enumerate(self.params):
            if k.lower() == key:
                self.params[i] = (k, value)
                return
        self.params.append((key, value))

    @property
    def relayable(self) -> bool:
        """Unicast RTP over UDP (the default lower transport), which the proxy relays."""
        lower = self.protocol.upper().split("/")
        tcp = len(lower) > 2 and lower[2] == "TCP"
        return not tcp and not self.has("interleaved") and not self.has("multicast")

    def ports(self, key: str) -> tuple[int, int] | None:
        """`client_port=A-B` (or `=A`, meaning A and A+1) as (A, B)."""
        value = self.get(key)
        if value is None:
            return None
        first, _, second = value.partition("-")
        return int(first), int(second) if second else int(first) + 1


# ---------------------------------------------------------------------------------------------
# UDP: one relay per SETUP, four sockets.


def bind_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on `host` at an even port and the next one, as RTP and RTCP expect."""
    for _ in range(100):
        rtp = _udp_socket(host, 0)
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            try:
                return rtp, _udp_socket(host, port + 1)
            except OSError:
                pass
        rtp.close()
    raise OSError(f"found no free pair of UDP ports on {host} in 100 tries")


def _udp_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _Endpoint(asyncio.DatagramProtocol):
    """One of a relay's sockets: hands what it receives to `on_datagram`."""

    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" after a peer closed its socket: the datagram is gone, as it
        # would be on a network; the relay goes on.
        pass


class UdpRelay:
    """The RTP and RTCP of one track: a socket pair facing the server (the `client_port` the
    server sends to) and one facing the client (the `server_port` the client sees)."""

    def __init__(
        self, proxy: UdpLossProxy, local_host: str, rtp_loss: LossModel, rtcp_loss: LossModel
    ) -> None:
        self.proxy = proxy
        self.rtp_loss = rtp_loss
        self.rtcp_loss = rtcp_loss
        self.upstream_sockets = bind_pair(local_host)
        self.downstream_sockets: tuple[socket.socket, socket.socket] | None = None
        self.client: tuple[str, int, int] | None = None  # host, RTP port, RTCP port
        self.server: tuple[str, int, int] | None = None
        self.session: str | None = None
        self._transports: list[asyncio.DatagramTransport] = []
        self.closed = False

    @property
    def upstream_ports(self) -> tuple[int, int]:
        """The proxy's ports the server sends to (its `client_port`)."""
        return _ports(self.upstream_sockets)

    @property
    def downstream_ports(self) -> tuple[int, int]:
        """The proxy's ports the client sees as the server's (its `server_port`)."""
        assert self.downstream_sockets is not None, "the relay is not connected yet"
        return _ports(self.downstream_sockets)

    async def connect(
        self, client: tuple[str, int, int], server: tuple[str, int, int], local_host: str
    ) -> None:
        """Start relaying between `client` and `server` (host, RTP port, RTCP port), the
        client-side sockets on `local_host`."""
        self.client, self.server = client, server
        self.downstream_sockets = bind_pair(local_host)
        loop = asyncio.get_running_loop()
        up_rtp, up_rtcp = self.upstream_sockets
        down_rtp, down_rtcp = self.downstream_sockets
        handlers = [
            (up_rtp, self._from_server_rtp),
            (up_rtcp, self._from_server_rtcp),
            (down_rtp, self._from_client_rtp),
            (down_rtcp, self._from_client_rtcp),
        ]
        try:
            for sock, handler in handlers:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda h=handler: _Endpoint(h), sock=sock
                )
                self._transports.append(transport)  # type: ignore[arg-type]
        except BaseException:
            self.close()
            raise

    def _send(self, index: int, data: bytes, to_client: bool) -> None:
        """Send `data` from the socket facing the receiver: `index` 0 for RTP, 1 for RTCP."""
        if self.closed or self.client is None or self.server is None:
            return
        peer = self.client if to_client else self.server
        transport = self._transports[index + 2 if to_client else index]
        transport.sendto(data, (peer[0], peer[1 + index]))

    def _from_server_rtp(self, data: bytes) -> None:
        counters = self.proxy.counters
        if self.rtp_loss.drop():
            counters.rtp_dropped += 1
            return
        counters.rtp_relayed += 1
        self._send(0, data, to_client=True)

    def _from_server_rtcp(self, data: bytes) -> None:
        self._relay_rtcp(data, to_client=True)

    def _from_client_rtp(self, data: bytes) -> None:
        self.proxy.counters.client_rtp += 1
        self._send(0, data, to_client=False)

    def _from_client_rtcp(self, data: bytes) -> None:
        self._relay_rtcp(data, to_client=False)

    def _relay_rtcp(self, data: bytes, to_client: bool) -> None:
        counters = self.proxy.counters
        if self.rtcp_loss.drop():
            counters.rtcp_dropped += 1
            return
        counters.rtcp_relayed += 1
        self._send(1, data, to_client)

    def close(self) -> None:
        """Close the four sockets (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for transport in self._transports:
            transport.close()
        # A transport closes its socket a loop turn later; close them now, so the ports are
        # free (and nothing leaks) even when the loop ends right after.
        for sock in (*self.upstream_sockets, *(self.downstream_sockets or ())):
            sock.close()
        self.proxy.relays.discard(self)


def _ports(pair: tuple[socket.socket, socket.socket]) -> tuple[int, int]:
    return pair[0].getsockname()[1], pair[1].getsockname()[1]


# ---------------------------------------------------------------------------------------------
# TCP: the RTSP connection, message by message, with `$` interleaved data passed through.


async def read_unit(reader: asyncio.StreamReader) -> RtspMessage | bytes | None:
    """The next RTSP message, or an interleaved `$` packet as its raw bytes; None at the end."""
    try:
        first = await reader.readexactly(1)
        while first in (b"\r", b"\n"):  # stray line ends between messages
            first = await reader.readexactly(1)
        if first == b"$":
            head = await reader.readexactly(3)
            return first + head + await reader.readexactly(int.from_bytes(head[1:3], "big"))
        head = first + await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    except asyncio.LimitOverrunError as exc:
        raise ValueError(f"an RTSP message head longer than {_MAX_HEAD} bytes") from exc
    message = RtspMessage.parse_head(head)
    length = int(message.header("Content-Length") or 0)
    try:
        message.body = await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return message


class _Connection:
    """One client's RTSP connection and its upstream twin, with the relays of its SETUPs."""

    def __init__(
        self, proxy: UdpLossProxy, client: tuple[str, str], server: tuple[str, str]
    ) -> None:
        self.proxy = proxy
        # (peer, ours) addresses of the two TCP connections: the relays bind beside them.
        self.client_host, self.client_side_host = client
        self.server_host, self.local_host = server
        self.methods: dict[str, str] = {}  # CSeq → method of the requests not yet answered
        self.pending: dict[str, tuple[UdpRelay, list[TransportSpec]]] = {}  # SETUPs, by CSeq
        self.relays: list[UdpRelay] = []

    def from_client(self, message: RtspMessage) -> RtspMessage:
        proxy = self.proxy
        message.rewrite_addresses(proxy.authority, proxy.upstream_authority)
        if not message.is_request:
            return message
        cseq = message.header("CSeq") or ""
        self.methods[cseq] = message.method
        transport = message.header("Transport")
        if message.method != "SETUP" or transport is None:
            return message
        specs = TransportSpec.parse_header(transport)
        if not any(spec.relayable and spec.has("client_port") for spec in specs):
            proxy.counters.other_setups += 1
            return message
        relay = proxy.new_relay(self.local_host)
        self.relays.append(relay)
        self.pending[cseq] = (relay, specs)
        rewritten = []
        for spec in specs:
            copy = TransportSpec(spec.protocol, list(spec.params))
            if copy.relayable and copy.has("client_port"):
                copy.put("client_port", "{}-{}".format(*relay.upstream_ports))
                if copy.has("destination"):
                    copy.put("destination", self.local_host)
            rewritten.append(copy)
        message.set_header("Transport", TransportSpec.format_header(rewritten))
        return message

    async def from_server(self, message: RtspMessage) -> RtspMessage:
        proxy = self.proxy
        message.rewrite_addresses(proxy.upstream_authority, proxy.authority)
        if message.is_request:  # the server asking the client (GET_PARAMETER, ANNOUNCE)
            return message
        cseq = message.header("CSeq") or ""
        method = self.methods.pop(cseq, "")
        pending = self.pending.pop(cseq, None)
        if pending is not None:
            await self._answer_setup(message, *pending)
        elif method == "TEARDOWN" and message.status // 100 == 2:
            session = _session_id(message)
            for relay in [r for r in self.relays if r.session == session]:
                relay.close()
                self.relays.remove(relay)
        return message

    async def _answer_setup(
        self, message: RtspMessage, relay: UdpRelay, asked: list[TransportSpec]
    ) -> None:
        """Start `relay` from the server's answer and give the client its own ports back."""
        transport = message.header("Transport")
        specs = TransportSpec.parse_header(transport) if transport else []
        chosen = next((s for s in specs if s.relayable and s.has("server_port")), None)
        if message.status // 100 != 2 or chosen is None:
            relay.close()  # refused, or the server chose an interleaved transport
            if message.status // 100 == 2:
                self.proxy.counters.other_setups += 1
            return
        original = next(s for s in asked if s.relayable and s.has("client_port"))
        client_rtp, client_rtcp = original.ports("client_port")  # type: ignore[misc]
        server_rtp, server_rtcp = chosen.ports("server_port")  # type: ignore[misc]
        client_host = original.get("destination") or self.client_host
        server_host = chosen.get("source") or self.server_host
        await relay.connect(
            (client_host, client_rtp, client_rtcp),
            (server_host, server_rtp, server_rtcp),
            self.client_side_host,
        )
        relay.session = _session_id(message)
        chosen.put("client_port", f"{client_rtp}-{client_rtcp}")
        chosen.put("server_port", "{}-{}".format(*relay.downstream_ports))
        if chosen.has("source"):
            chosen.put("source", self.client_side_host)
        if chosen.has("destination"):
            chosen.put("destination", client_host)
        message.set_header("Transport", chosen.format())
        self.proxy.counters.udp_setups += 1

    def close(self) -> None:
        for relay in self.relays:
            relay.close()
        self.relays.clear()
        self.pending.clear()


def _session_id(message: RtspMessage) -> str:
    """The session id of `Session: id;timeout=60`."""
    return (message.header("Session") or "").split(";")[0].strip()


class UdpLossProxy:
    """An RTSP proxy on `listen_host:listen_port` (0: a free port) in front of
    `upstream_host:upstream_port` that loses server→client RTP datagrams.

    Args:
        upstream_host, upstream_port: the real RTSP server.
        loss: probability that a server→client RTP datagram starts a loss burst.
        burst: datagrams lost in a row per loss event (1: independent losses).
        seed: seeds each track's loss generator (track n of the run gets `f"{seed}:{n}"`).
        rtcp_loss: probability that an RTCP datagram (either way) is lost.
        listen_host, listen_port: where clients connect.

    Attributes:
        port: the port it listens on (the kernel's pick once started, when 0 was asked).
        counters: what it relayed and dropped (`LossCounters`).
        relays: the tracks being relayed now.
        errors: what broke a connection other than a peer hanging up (tests assert none).

    Example:
        proxy = UdpLossProxy("127.0.0.1", 8554, loss=0.05, seed=1)
        with ProxyThread(proxy):
            open(proxy.url("cam"))  # rtsp://127.0.0.1:PORT/cam
        print(proxy.counters.rtp_dropped)
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        loss: float = 0.0,
        burst: int = 1,
        seed: int = 0,
        rtcp_loss: float = 0.0,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        LossModel(loss, burst)  # checks the values now, not at the first SETUP
        LossModel(rtcp_loss)
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.loss, self.burst, self.seed, self.rtcp_loss = loss, burst, seed, rtcp_loss
        self.listen_host = listen_host
        self.port = listen_port
        self.counters = LossCounters()
        self.relays: set[UdpRelay] = set()
        self.errors: list[Exception] = []
        self._tracks = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def authority(self) -> str:
        return f"{self.listen_host}:{self.port}"

    @property
    def upstream_authority(self) -> str:
        return f"{self.upstream_host}:{self.upstream_port}"

    def url(self, mount: str) -> str:
        return f"rtsp://{self.authority}/{mount}"

    def new_relay(self, local_host: str) -> UdpRelay:
        """A relay for the next track, its server-side sockets on `local_host`, with its own
        seeded loss generators."""
        n, self._tracks = self._tracks, self._tracks + 1
        relay = UdpRelay(
            self,
            local_host,
            LossModel(self.loss, self.burst, f"{self.seed}:{n}"),
            LossModel(self.rtcp_loss, 1, f"{self.seed}:{n}:rtcp"),
        )
        self.relays.add(relay)
        return relay

    async def start(self) -> None:
        """Listen; `port` is the real port afterwards."""
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self.port, limit=_MAX_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, close every connection and every relay."""
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for relay in list(self.relays):
            relay.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> UdpLossProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._server is None or not self._server.is_serving():  # accepted as it stopped
            await _close(writer)
            return
        self._handlers.add(task)
        self.counters.connections += 1
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(task)
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port, limit=_MAX_HEAD
            )
        except OSError:
            return  # the client sees its connection closed, as with no server at all
        connection = _Connection(
            self,
            (writer.get_extra_info("peername")[0], writer.get_extra_info("sockname")[0]),
            (up_writer.get_extra_info("peername")[0], up_writer.get_extra_info("sockname")[0]),
        )
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, connection, from_client=True)),
            asyncio.create_task(self._pump(up_reader, writer, connection, from_client=False)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            results = await asyncio.gather(*pumps, return_exceptions=True)
            self.errors += [r for r in results if isinstance(r, Exception)]
            connection.close()
            await _close(up_writer)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: _Connection,
        from_client: bool,
    ) -> None:
        """Copy one direction of the RTSP connection, rewriting messages on the way."""
        with contextlib.suppress(ConnectionError):
            while (unit := await read_unit(reader)) is not None:
                if isinstance(unit, bytes):
                    self.counters.interleaved += 1
                    writer.write(unit)
                else:
                    if from_client:
                        unit = connection.from_client(unit)
                    else:
                        unit = await connection.from_server(unit)
                    writer.write(unit.encode())
                await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


class ProxyThread:
    """Runs a proxy on its own event loop in a thread: `with ProxyThread(proxy): ...`.

    A test's event loop also runs the pipeline; a relay on it would hold datagrams back
    whenever the pipeline keeps the loop busy, and the kernel would drop what overflows —
    losses the counters would not show."""

    def __init__(self, proxy: UdpLossProxy, timeout: float = 10.0) -> None:
        self.proxy = proxy
        self.timeout = timeout
        self._thread = threading.Thread(target=self._run, name="udp-loss-proxy", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> UdpLossProxy:
        self._thread.start()
        if not self._ready.wait(self.timeout):
            raise TimeoutError(f"the UDP loss proxy did not start within {self.timeout} s")
        if self._error is not None:
            self._thread.join(self.timeout)
            raise self._error
        return self.proxy

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(self.timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the UDP loss proxy did not stop within {self.timeout} s")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self.proxy.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.proxy.stop()


# ---------------------------------------------------------------------------------------------
# Standalone.


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT", help="the RTSP server")
    parser.add_argument("--loss", type=float, default=0.0, help="RTP datagram loss, 0 to 1")
    parser.add_argument("--burst", type=int, default=1, help="datagrams lost per loss event")
    parser.add_argument("--rtcp-loss", type=float, default=0.0, help="RTCP loss, 0 to 1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--upstream must be HOST:PORT, got {args.upstream!r}")
    args.upstream_host, args.upstream_port = host, int(port)
    return args


async def _serve_until_signal(proxy: UdpLossProxy) -> None:
    await proxy.start()
    print(f"listening on {proxy.authority}", file=sys.stderr)
    print("READY", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await proxy.stop()
        print(proxy.counters, file=sys.stderr)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        proxy = UdpLossProxy(
            args.upstream_host,
            args.upstream_port,
            loss=args.loss,
            burst=args.burst,
            seed=args.seed,
            rtcp_loss=args.rtcp_loss,
            listen_host=args.listen_host,
            listen_port=args.listen,
        )
    except ValueError as exc:
        print(f"udp_loss_proxy: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve_until_signal(proxy))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
