"""A real RTSP server for the live-source tests and benchmarks: GStreamer's, on 127.0.0.1.

Run it with Debian's Python (it has `gi`; the project's virtual environment does not)::

    /usr/bin/python3 bench/harness/rtsp_server.py --port 8554 \
        --mount cam1=pattern --mount clip=/path/to/clip.mp4

`NAME=pattern` serves a live 320×180 25 fps test pattern (H.264, a key frame every second;
`NAME=pattern:640x360` for another size, `NAME=pattern:320x180:h265` or `:h264-444` for
another encoding); `NAME=lossy:0.05` is the 320×180 pattern with that
share of its encoded frames dropped at random before they are packetised (whole pictures
missing, later frames referring to them; every RTP packet that is sent arrives). For what a
network really does, losing UDP datagrams (slices and FU-A fragments, sequence gaps, RTCP),
put the tests' `tests/servers/udp_loss_proxy.py` between the client and a plain `pattern` mount.
`NAME=/path/clip.mp4` serves that MP4's H.264 video once, at its own pace, then ends. Media
factories are shared, so several clients of one mount see one pipeline. The server prints
"READY" on stdout once it listens, and runs until it is killed.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PATTERN = (
    "( videotestsrc is-live=true ! video/x-raw,width={width},height={height},framerate=25/1 "
    "! {encode} )"
)
#: How a pattern mount encodes and packetises, by the name after its size ("pattern:WxH:NAME"):
#: what a camera reconfigured between two connections may send instead of plain H.264.
ENCODINGS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
    "! rtph264pay name=pay0 pt=96",
    # H.264 High 4:4:4: the same codec with other parameters (profile, chroma format).
    "h264-444": "videoconvert ! video/x-raw,format=Y444 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
    "! rtph264pay name=pay0 pt=96",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
    "! rtph265pay name=pay0 pt=96",
}
LOSSY = (
    "( videotestsrc is-live=true ! video/x-raw,width=320,height=180,framerate=25/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
    "! identity drop-probability={p} ! rtph264pay name=pay0 pt=96 )"
)
CLIP = '( filesrc location="{path}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )'


def launch_line(what: str) -> str:
    """The GStreamer launch line that serves `what`: "pattern" (320×180), "pattern:WxH",
    "pattern:WxH:ENCODING" (one of `ENCODINGS`), "lossy:P", or an MP4 path."""
    if what == "pattern" or what.startswith("pattern:"):
        size, _, encoding = what.partition(":")[2].partition(":")
        width, _, height = (size or "320x180").partition("x")
        if (encoding or "h264") not in ENCODINGS:
            raise SystemExit(f"unknown encoding {encoding!r}: one of {', '.join(ENCODINGS)}")
        encode = ENCODINGS[encoding or "h264"]
        return PATTERN.format(width=int(width), height=int(height), encode=encode)
    if what.startswith("lossy:"):
        return LOSSY.format(p=float(what.partition(":")[2]))
    if '"' in what:
        raise SystemExit(f"a clip path may not contain a double quote, got {what!r}")
    return CLIP.format(path=what)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--mount",
        action="append",
        required=True,
        metavar="NAME=pattern|CLIP",
        help="serve rtsp://127.0.0.1:PORT/NAME (repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for mount in args.mount:
        name, _, what = mount.partition("=")
        if not name or not what:
            print(f"--mount must be NAME=pattern or NAME=CLIP, got {mount!r}", file=sys.stderr)
            return 2
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(what))
        factory.set_shared(True)
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print("READY", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
