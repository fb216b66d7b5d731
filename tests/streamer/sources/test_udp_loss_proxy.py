"""The UDP loss proxy (`tests/servers/udp_loss_proxy.py`) that the packet-loss tests rely on:
its loss model, its RTSP rewriting, and real sessions through it to GStreamer's RTSP server."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import av
import pytest
from live_helpers import wait_until
from servers.udp_loss_proxy import LossModel, RtspMessage, UdpLossProxy, read_unit

PROXY = Path(__file__).resolve().parents[2] / "servers" / "udp_loss_proxy.py"


# ---------------------------------------------------------------------------------------------
# The loss model and the rewriting, on their own.


def test_the_same_seed_loses_the_same_datagrams_at_about_the_asked_rate():
    model_a, model_b = LossModel(0.05, seed="7:0"), LossModel(0.05, seed="7:0")
    a = [model_a.drop() for _ in range(20_000)]
    assert a == [model_b.drop() for _ in range(20_000)]
    assert a != [LossModel(0.05, seed="7:1").drop() for _ in range(20_000)]
    assert 0.04 < sum(a) / len(a) < 0.06


def test_bursts_lose_runs_of_consecutive_datagrams():
    model = LossModel(0.02, burst=4, seed=3)
    drops = [model.drop() for _ in range(20_000)]
    runs, length = [], 0
    for dropped in [*drops, False]:
        if dropped:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    assert len(runs) > 100 and all(run >= 4 for run in runs)
    assert all(not LossModel(0.0, burst=4, seed=3).drop() for _ in range(1000))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"probability": 1.5}, "loss probability must be from 0 to 1, got 1.5"),
     ({"probability": 0.1, "burst": 0}, "burst must be at least 1 datagram, got 0")],
)  # fmt: skip
def test_bad_loss_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossModel(**kwargs)
    with pytest.raises(ValueError, match=message):
        UdpLossProxy("127.0.0.1", 8554, loss=kwargs["probability"], burst=kwargs.get("burst", 1))


def test_an_answer_naming_the_server_names_the_proxy_with_its_length_fixed():
    body = (
        b"v=0\r\nm=video 0 RTP/AVP 96\r\n"
        b"a=control:rtsp://127.0.0.1:8554/cam/stream=0\r\n"
        b"a=x-other:rtsp://127.0.0.1:85540/not-this-one\r\n"
    )
    head = (
        b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Base: rtsp://127.0.0.1:8554/cam/\r\n"
        b'Authorization: Digest uri="rtsp://127.0.0.1:8554/cam"\r\n'
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    message = RtspMessage.parse_head(head)
    message.body = body
    message.rewrite_addresses("127.0.0.1:8554", "127.0.0.1:40000")
    encoded = message.encode()
    again = RtspMessage.parse_head(encoded.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
    assert again.header("Content-Base") == "rtsp://127.0.0.1:40000/cam/"
    assert again.header("Authorization") == 'Digest uri="rtsp://127.0.0.1:8554/cam"'
    new_body = encoded.partition(b"\r\n\r\n")[2]
    assert int(again.header("Content-Length")) == len(new_body) == len(body) + 1
    assert b"a=control:rtsp://127.0.0.1:40000/cam/stream=0" in new_body
    assert b"rtsp://127.0.0.1:85540/not-this-one" in new_body


# ---------------------------------------------------------------------------------------------
# Real sessions through the proxy to GStreamer's RTSP server.


class RawRtspClient:
    """A bare RTSP client over UDP transport: what the proxy must get right, seen from the
    client's side (FFmpeg hides it)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.cseq = 0
        self.session: str | None = None

    @classmethod
    async def connect(cls, port: int) -> RawRtspClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, url: str, **headers: str) -> RtspMessage:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}"]
        lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = await asyncio.wait_for(read_unit(self.reader), 10)
        assert isinstance(answer, RtspMessage) and answer.status == 200, answer
        assert answer.header("CSeq") == str(self.cseq)
        return answer

    async def setup(self, url: str, rtp: socket.socket) -> RtspMessage:
        port = rtp.getsockname()[1]
        session = {"Session": self.session} if self.session else {}
        transport = f"RTP/AVP/UDP;unicast;client_port={port}-{port + 1}"
        answer = await self.request("SETUP", url, Transport=transport, **session)
        self.session = answer.header("Session").split(";")[0]
        return answer

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class RtpReceiver(asyncio.DatagramProtocol):
    """A client's RTP socket: keeps each datagram's sender and sequence number."""

    def __init__(self) -> None:
        self.senders: set[tuple[str, int]] = set()
        self.sequence: list[int] = []
        self.payload_types: set[int] = set()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert data[0] >> 6 == 2  # RTP version 2
        self.senders.add(addr)
        self.payload_types.add(data[1] & 0x7F)
        self.sequence.append(int.from_bytes(data[2:4], "big"))


def _even_pair() -> socket.socket:
    """A UDP socket at an even port whose next port is free too (RTP and RTCP)."""
    for _ in range(100):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        if sock.getsockname()[1] % 2 == 0:
            return sock
        sock.close()
    raise OSError("no even UDP port")


async def _receive(sock: socket.socket) -> tuple[asyncio.DatagramTransport, RtpReceiver]:
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(RtpReceiver, sock=sock)  # type: ignore[return-value]


async def test_two_clients_three_tracks_are_relayed_through_the_proxys_own_ports_with_loss(
    rtsp_server,
):
    """One client sets up /cam1 and /cam2 on one connection, another /cam1: each track's
    answer gives the client back its own ports and the proxy's server ports, the datagrams
    come from those, sequence numbers show the losses, and TEARDOWN closes the relays."""
    async with UdpLossProxy("127.0.0.1", rtsp_server.port, loss=0.2, seed=1) as proxy:
        first, second = (
            await RawRtspClient.connect(proxy.port),
            await RawRtspClient.connect(proxy.port),
        )
        tracks = []  # (client, url, transport, receiver)
        for client, mount in ((first, "cam1"), (first, "cam2"), (second, "cam1")):
            described = await client.request("DESCRIBE", proxy.url(mount), Accept="application/sdp")
            base = described.header("Content-Base")
            assert base == f"{proxy.url(mount)}/"  # the server named itself; the proxy fixed it
            assert f"127.0.0.1:{rtsp_server.port}" not in described.body.decode()
            client.session = None
            rtp = _even_pair()
            transport, receiver = await _receive(rtp)
            answer = await client.setup(f"{base}stream=0", rtp)
            tracks.append((client, client.session, base, answer, transport, receiver))
            await client.request("PLAY", base, Session=client.session, Range="npt=0.000-")
        assert len(proxy.relays) == 3 and proxy.counters.udp_setups == 3

        await wait_until(lambda: all(len(t[5].sequence) >= 60 for t in tracks), 20,
                         "60 datagrams on each track")  # fmt: skip
        relays_by_port = {r.downstream_ports[0]: r for r in proxy.relays}
        for *_, answer, transport, receiver in tracks:
            port = transport.get_extra_info("sockname")[1]
            spec = answer.header("Transport")
            assert f"client_port={port}-{port + 1}" in spec
            server_port = int(spec.split("server_port=")[1].split("-")[0])
            assert receiver.senders == {("127.0.0.1", server_port)}
            assert receiver.payload_types == {96}
            assert relays_by_port[server_port].server[1] != server_port  # not the server's own
            seq = receiver.sequence
            missing = (seq[-1] - seq[0] + 1) % 65536 - len(set(seq))
            assert missing > 0  # gaps in the sequence numbers: datagrams were lost on the way
        counters = proxy.counters
        assert 0.1 < counters.rtp_dropped / (counters.rtp_dropped + counters.rtp_relayed) < 0.35

        for client, session, base, *_ in tracks[:2]:
            await client.request("TEARDOWN", base, Session=session)
        assert len(proxy.relays) == 1  # the second client's track goes on
        relay = next(iter(proxy.relays))
        await first.close()
        await second.close()
        await wait_until(lambda: not proxy.relays, 5, "the relay closed with its connection")
        assert relay.closed and all(s.fileno() == -1 for s in relay.upstream_sockets)
        for *_, transport, _ in tracks:
            transport.close()
    assert proxy.counters.connections == 2 and not proxy.errors


async def test_interleaved_tcp_passes_through_untouched(rtsp_server):
    """`rtsp_transport=tcp`: RTP travels inside the RTSP connection; the proxy relays no
    datagram, loses nothing, and FFmpeg decodes the stream."""
    async with UdpLossProxy("127.0.0.1", rtsp_server.port, loss=0.5, seed=1) as proxy:

        def decode() -> int:
            options = {"rtsp_transport": "tcp"}
            with av.open(proxy.url("cam1"), options=options, timeout=(5, 5)) as container:
                frames = 0
                for packet in container.demux(video=0):
                    frames += len(packet.decode())
                    if frames >= 30:
                        return frames
            return frames

        assert await asyncio.to_thread(decode) == 30
    counters = proxy.counters
    assert not proxy.errors
    assert counters.interleaved >= 30 and counters.other_setups == 1
    assert counters.udp_setups == counters.rtp_relayed == counters.rtp_dropped == 0


async def test_stop_closes_the_relays_and_connections_of_clients_still_playing(rtsp_server):
    proxy = UdpLossProxy("127.0.0.1", rtsp_server.port, loss=0.05)
    await proxy.start()
    client = await RawRtspClient.connect(proxy.port)
    rtp = _even_pair()
    transport, receiver = await _receive(rtp)
    base = f"{proxy.url('cam2')}/"
    await client.setup(f"{base}stream=0", rtp)
    await client.request("PLAY", base, Session=client.session)
    await wait_until(lambda: len(receiver.sequence) > 5, 10, "datagrams")
    (relay,) = proxy.relays
    await proxy.stop()
    assert not proxy.relays and relay.closed
    assert all(s.fileno() == -1 for s in (*relay.upstream_sockets, *relay.downstream_sockets))
    assert await asyncio.wait_for(client.reader.read(), 5) == b""  # the proxy hung up
    await client.close()
    transport.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", proxy.port)


def test_standalone_it_prints_ready_relays_and_reports_its_counters_when_interrupted(
    rtsp_server,
):
    cmd = [sys.executable, str(PROXY), "--upstream", f"127.0.0.1:{rtsp_server.port}",
           "--loss", "0.05", "--seed", "1"]  # fmt: skip
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout.readline().strip() == "READY"
            port = int(proc.stderr.readline().rsplit(":", 1)[1])
            with av.open(f"rtsp://127.0.0.1:{port}/cam1", options={"rtsp_transport": "udp"},
                         timeout=(5, 5)) as container:  # fmt: skip
                frames = 0
                for packet in container.demux(video=0):
                    frames += len(packet.decode())
                    if frames >= 25:
                        break
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
    assert proc.returncode == 0
    assert "udp_setups=1" in err and "rtp_relayed=" in err and "rtp_relayed=0," not in err


def test_standalone_a_bad_loss_is_refused_naming_it():
    cmd = [sys.executable, str(PROXY), "--upstream", "127.0.0.1:8554", "--loss", "5"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "loss probability must be from 0 to 1, got 5.0" in done.stderr
