// The viewer's WebRTC video and its latency meter (used by app.js). A stream is watched over
// WebRTC (one RTCPeerConnection per card, receive only, host ICE candidates) or MJPEG (an
// <img>); when WebRTC fails the card falls back to MJPEG. With the server's clock stamp on
// (a latency bench), the meter reads each shown frame's stamp back from a canvas and keeps
// the delay from drawing to showing: window.streamerLatency[stream][mode] = [ms, ...].
"use strict";

window.streamerRtc = (() => {
  const BITS = 32; // the stamp: 32 blocks of 16 px (the wall time in ms), complement below
  const BLOCK = 16;
  const KEEP = 2000; // latency samples kept per stream and mode
  const FIRST_FRAME_MS = 10000; // WebRTC that shows no frame by then falls back to MJPEG
  const DISCONNECTED_MS = 3000; // a connection disconnected this long falls back too
  window.streamerLatency = {};
  const connections = {}; // stream -> its RTCPeerConnection (tools read its getStats())

  function post(url, body) {
    return fetch(url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  }

  // Wait for the browser's own candidates: aiortc takes them in the offer (no trickle).
  function gathered(pc, ms) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, ms);
    });
  }

  // Start WebRTC for card `c` of stream `name`; `url(path)` adds the token; `fallback(why)`
  // is called once if it fails (no answer, a failed connection, no frame in time).
  async function start(name, c, url, fallback) {
    stop(c);
    const pc = new RTCPeerConnection({ iceServers: [] });
    const session = { pc, peer: null, url, failed: false };
    c.rtc = session;
    connections[name] = pc;
    const fail = (why) => {
      if (session.failed || c.rtc !== session) return;
      session.failed = true;
      stop(c);
      fallback(why);
    };
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addEventListener("track", (e) => {
      c.video.srcObject = new MediaStream([e.track]);
      e.track.addEventListener("ended", () => fail("the WebRTC video ended"));
    });
    pc.addEventListener("connectionstatechange", () => { // the server closed it, or the network
      if (["failed", "closed"].includes(pc.connectionState)) fail("the WebRTC connection ended");
      // A server that closed the connection is only seen as "disconnected" (ICE consent).
      if (pc.connectionState === "disconnected") {
        setTimeout(() => {
          if (pc.connectionState === "disconnected") fail("the WebRTC connection was lost");
        }, DISCONNECTED_MS);
      }
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 3000);
      const reply = await post(url(`api/webrtc/${encodeURIComponent(name)}`),
        { type: "offer", sdp: pc.localDescription.sdp });
      const answer = await reply.json();
      if (!reply.ok) throw new Error(answer.error || `HTTP ${reply.status}`);
      session.peer = answer.peer;
      c.video.dataset.codec = answer.codec;
      if (c.rtc !== session) { stop({ rtc: session }); return; } // switched meanwhile
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch (err) {
      fail(`WebRTC: ${err.message || err}`);
      return;
    }
    setTimeout(() => {
      if (c.rtc === session && c.video.readyState < 2) fail("WebRTC showed no frame");
    }, FIRST_FRAME_MS);
  }

  // End card `c`'s WebRTC connection, and tell the server (it frees the peer at once).
  function stop(c) {
    const session = c.rtc;
    if (!session) return;
    c.rtc = null;
    for (const name of Object.keys(connections)) {
      if (connections[name] === session.pc) delete connections[name];
    }
    if (session.peer) { // before closing: the close alone may free it first (then a 404)
      fetch(session.url(`api/webrtc/peers/${session.peer}`), { method: "DELETE", keepalive: true })
        .catch(() => {});
    }
    session.pc.close();
    if (c.video) c.video.srcObject = null;
  }

  // The stamp's value in an element showing a frame (video or img), null when unreadable.
  function readStamp(el, ctx) {
    const w = BITS * BLOCK;
    const h = 2 * BLOCK;
    const width = el.videoWidth || el.naturalWidth;
    if (!width || width < w) return null;
    ctx.drawImage(el, 0, 0, w, h, 0, 0, w, h);
    const px = ctx.getImageData(0, 0, w, h).data;
    let value = 0;
    for (let i = 0; i < BITS; i++) {
      const at = (y) => (y * w + BLOCK / 2 + i * BLOCK) * 4;
      const top = px[at(BLOCK / 2)] + px[at(BLOCK / 2) + 1] + px[at(BLOCK / 2) + 2] > 384;
      const bottom = px[at(BLOCK + BLOCK / 2)] + px[at(BLOCK + BLOCK / 2) + 1]
        + px[at(BLOCK + BLOCK / 2) + 2] > 384;
      if (top === bottom) return null;
      value = value * 2 + (top ? 1 : 0);
    }
    return value;
  }

  function percentile(sorted, q) {
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  // Read the stamp of every new frame `c` shows (once per animation frame) and show the
  // latency's p50/p95 in `c.glass`; `mode()` says which element is showing.
  function meter(name, c, mode) {
    const canvas = document.createElement("canvas");
    canvas.width = BITS * BLOCK;
    canvas.height = 2 * BLOCK;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const samples = (window.streamerLatency[name] = { webrtc: [], mjpeg: [] });
    let last = null;
    const tick = () => {
      const now = Date.now();
      const m = mode();
      const el = m === "webrtc" ? c.video : c.img;
      const value = document.hidden ? null : readStamp(el, ctx);
      if (value !== null && value !== last) {
        last = value;
        const ms = (now - value + 2 ** BITS) % 2 ** BITS;
        if (ms < 60000) {
          const list = samples[m];
          list.push(ms);
          if (list.length > KEEP) list.shift();
          const sorted = [...list].sort((a, b) => a - b);
          c.glass.hidden = false;
          c.glass.textContent = `glass-to-glass (${m}) p50 ${percentile(sorted, 0.5)} ms · `
            + `p95 ${percentile(sorted, 0.95)} ms · ${sorted.length} frames`;
        }
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  return {
    start, stop, meter, connections, supported: typeof RTCPeerConnection === "function",
  };
})();
