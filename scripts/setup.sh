#!/usr/bin/env bash
# Set up streamer in a virtual environment (.venv) beside this script's repository.
#   bash scripts/setup.sh          the package, its runtime dependencies and OpenVINO (the cpu
#                                  extra: the default --backend auto runs the encoder on it on
#                                  a CPU, and later runs start without building the model)
#   bash scripts/setup.sh --test   also the test tools, Ray, OpenVINO + NNCF and ONNX Runtime (the cluster, cpu and onnx extras), Debian's ffmpeg (ffprobe checks outputs)
#                                  and GStreamer's RTSP server (the live-source tests' camera)
#                                  and Debian's chromium (the web viewer's browser test)
#                                  and Debian's mosquitto (the MQTT tests' broker; the mqtt extra)
#                                  and aiortc (the viewer's WebRTC; the webrtc extra)
# Safe to run again: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
want_tests=0
[ "${1:-}" = "--test" ] && want_tests=1

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python 3.11 or newer is needed (found: $("$python" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi

if [ "$want_tests" = 1 ] && ! command -v ffprobe >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's ffmpeg (ffprobe validates what the tests write)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "setup: the tests need ffprobe: install ffmpeg (e.g. 'sudo apt-get install ffmpeg')" >&2
    exit 1
  fi
fi

if [ "$want_tests" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium (the web viewer test loads its page headless)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: the tests need chromium: install it (e.g. 'sudo apt-get install chromium')" >&2
    exit 1
  fi
fi

if [ "$want_tests" = 1 ] && ! [ -x /usr/sbin/mosquitto ] && ! command -v mosquitto >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's mosquitto (the MQTT tests publish to a real broker)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
  else
    echo "setup: the tests need an MQTT broker: install mosquitto (e.g. 'sudo apt-get install mosquitto')" >&2
    exit 1
  fi
fi

# The live-source tests run a real RTSP server on Debian's Python (it has `gi`; the venv does not).
rtsp_check='import gi; gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
assert all(Gst.ElementFactory.find(e) for e in ("videotestsrc", "x264enc", "rtph264pay", "qtdemux", "h264parse"))'
rtsp_packages="gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad"
if [ "$want_tests" = 1 ] && ! /usr/bin/python3 -c "$rtsp_check" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing GStreamer's RTSP server (the live-source tests stream from it)"
    # shellcheck disable=SC2086  # a word list on purpose
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $rtsp_packages >/dev/null
  else
    echo "setup: the tests need GStreamer's RTSP server: sudo apt-get install" $rtsp_packages >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
extras="[cpu]"
# The tests also run the cluster (`--cluster`) on simulated Ray nodes, publish to MQTT
# (`--mqtt`), show the viewer's WebRTC in Chromium and compare the OpenVINO and ONNX Runtime
# backends (fp32 and int8) with torch: the `cluster`, `mqtt`, `webrtc`, `cpu` and `onnx` extras.
[ "$want_tests" = 1 ] && extras="[test,cluster,mqtt,webrtc,cpu,onnx]"
stamp=".venv/.streamer-installed$extras"
digest=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  echo "setup: installing streamer$extras and its dependencies into .venv (torch is large: minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".$extras"
  echo "$digest" > "$stamp"
fi
# Bytecode for streamer's own modules. An editable install writes it at the first import,
# unless PYTHONDONTWRITEBYTECODE is set (as in many container images), and then every start
# compiles ~160 modules again: 0.15 s of each `streamer run` on a 2-core machine. compileall
# writes it regardless and skips what is up to date; a module edited later is compiled in
# memory as usual.
.venv/bin/python -m compileall -q -j 0 streamer encoders >/dev/null

if [ "$want_tests" = 1 ]; then
  # The LLM client tests need a real OpenAI-compatible server (llama-cpp-python + SmolLM2);
  # the script skips whatever is already installed.
  bash scripts/llm_server.sh
fi
