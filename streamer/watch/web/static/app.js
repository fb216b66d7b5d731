// The streamer viewer page: one card per stream (live video over WebRTC or MJPEG, caption,
// tags, status and a caption history), kept up to date by the server's event stream. Plain JS,
// no build step; the WebRTC part is rtc.js.
"use strict";

(() => {
  const HISTORY = 200; // history items kept per stream on the page
  const token = new URLSearchParams(location.search).get("token");
  const cards = new Map();
  let lastId = 0;
  let runId = null;
  let rtcOffered = false; // the server offers WebRTC (aiortc installed): the default view
  let runEnded = false; // the server said the run is over: its videos stop where they are
  const FINISHED = ["ended", "failed"]; // a stream in these states draws no more frames
  const forcedView = new URLSearchParams(location.search).get("view"); // ?view=mjpeg|webrtc
  const rtc = window.streamerRtc;

  // <img> and EventSource cannot send headers: the token travels in the query.
  function withToken(path) {
    if (!token) return path;
    return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
  }

  function text(el, value) {
    el.textContent = value == null ? "" : String(value);
  }

  function videoUrl(name) {
    return withToken(`streams/${encodeURIComponent(name)}/mjpeg`);
  }

  function card(name, state) {
    let entry = cards.get(name);
    if (entry) return entry;
    const node = document.getElementById("stream-card").content.firstElementChild.cloneNode(true);
    node.dataset.stream = name;
    const q = (sel) => node.querySelector(sel);
    entry = {
      node, img: q("img.video"), state: q(".state"), caption: q(".caption-text"),
      source: q(".caption-source"), tags: q(".tags"), stats: q(".stats"),
      problem: q(".problem"), history: q(".history"), summary: q(".summary"),
      video: q("video.rtc"), select: q("select.view"), note: q(".view-note"),
      glass: q(".glass"), rtc: null, metered: false, streamState: state,
      mode: forcedView || (rtcOffered && rtc.supported ? "webrtc" : "mjpeg"),
    };
    text(q(".name"), name);
    entry.img.alt = `live video of ${name}`;
    entry.img.addEventListener("error", () => {
      // The server restarted or the connection dropped: try again shortly, unless nothing
      // more will come (then no broken image: the card says why).
      setTimeout(() => {
        if (finished(entry)) noVideo(entry);
        else if (!document.hidden && entry.mode === "mjpeg") entry.img.src = videoUrl(name);
      }, 2000);
    });
    entry.select.querySelector("option[value=webrtc]").disabled = !(rtcOffered && rtc.supported);
    entry.select.value = entry.mode;
    if (!forcedView && entry.mode === "mjpeg") { // say why there is no WebRTC, as a refusal does
      const why = !rtcOffered ? "WebRTC is not offered by this server (it needs aiortc: pip install aiortc)"
        : "this browser has no WebRTC";
      text(entry.note, `${why}; showing MJPEG`);
      entry.note.hidden = false;
    }
    entry.select.addEventListener("change", () => {
      entry.note.hidden = true;
      setView(name, entry, entry.select.value);
    });
    showVideo(name, entry);
    document.getElementById("streams").appendChild(node);
    cards.set(name, entry);
    return entry;
  }

  function finished(c) {
    return runEnded || FINISHED.includes(c.streamState);
  }

  function noVideo(c) {
    c.img.hidden = true;
    text(c.note, runEnded ? "the run has ended" : `the stream has ${c.streamState}; no more video`);
    c.note.hidden = false;
  }

  // Keep the frame an MJPEG card shows as a still: the browser drops it when its stream
  // closes (it may have closed already: then the card says why it shows none).
  function freeze(c) {
    if (c.mode !== "mjpeg" || c.img.hidden) return;
    if (!c.img.naturalWidth || c.img.src.startsWith("data:")) {
      if (!c.img.src.startsWith("data:")) noVideo(c);
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = c.img.naturalWidth;
    canvas.height = c.img.naturalHeight;
    canvas.getContext("2d").drawImage(c.img, 0, 0);
    c.img.src = canvas.toDataURL("image/jpeg");
  }

  // Show the card's video in its mode (WebRTC falls back to MJPEG, saying why). A stream that
  // draws no more frames is not asked for any: it has none to send.
  function showVideo(name, c) {
    if (document.hidden) return;
    if (finished(c)) {
      if (!c.img.src && c.video.hidden) noVideo(c);
      return;
    }
    c.video.hidden = c.mode !== "webrtc";
    c.img.hidden = c.mode === "webrtc";
    if (c.mode === "webrtc") {
      c.img.removeAttribute("src");
      rtc.start(name, c, withToken, (why) => {
        if (finished(c)) return; // nothing more would come over MJPEG either
        text(c.note, `${why}; showing MJPEG`);
        c.note.hidden = false;
        setView(name, c, "mjpeg");
      });
    } else {
      rtc.stop(c);
      c.img.src = videoUrl(name);
    }
  }

  function setView(name, c, mode) {
    c.mode = mode;
    c.select.value = mode;
    showVideo(name, c);
  }

  function fmt(value, digits, unit) {
    return value == null ? "–" : `${Number(value).toFixed(digits)}${unit}`;
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString();
  }

  function showStream(s) {
    const c = card(s.name, s.state);
    // A run that ended with the stream still going (Ctrl-C, a stop): it stopped there.
    const state = runEnded && !FINISHED.includes(s.state) ? "stopped" : s.state;
    c.streamState = s.state;
    text(c.state, state);
    c.state.dataset.state = state;
    if (s.caption) {
      text(c.caption, s.caption.text);
      text(c.source, `(${s.caption.source})`);
    }
    c.tags.replaceChildren(...s.tags.map((t) => {
      const li = document.createElement("li");
      text(li, `${t.label} ${fmt(t.score == null ? null : t.score * 100, 0, "%")}`);
      return li;
    }));
    const lat = s.latency_ms;
    const parts = [
      `in ${fmt(s.fps.in, 1, "")} fps`, `out ${fmt(s.fps.out, 1, "")} fps`,
      `analysed ${fmt(s.fps.analysed, 1, "")}/s`,
      `latency ${fmt(lat.p50, 0, "")}/${fmt(lat.p95, 0, "")} ms`,
      `drops ${s.frames.dropped}`, `frames ${s.frames.delivered}`,
    ];
    if (s.live) parts.push(`reconnects ${s.reconnects}`);
    if (s.live || s.damaged) parts.push(`damaged ${s.damaged}`); // packet loss, undecodable packets
    text(c.stats, parts.join(" · "));
    const problem = s.offline_since != null
      ? `offline since ${clock(s.offline_since)}${s.last_error ? `: ${s.last_error}` : ""}`
      : s.state === "failed" ? `failed: ${s.last_error || "gave up"}` : "";
    text(c.problem, problem);
    c.problem.hidden = !problem;
  }

  function showStatus(status) {
    if (runId && status.run_id !== runId) {
      location.reload(); // another run on this address: its event ids start again
      return;
    }
    runId = status.run_id;
    rtcOffered = Boolean(status.webrtc && status.webrtc.available);
    if (status.ended) { // the run's last status: its videos stop, the page stays as it was
      runEnded = true;
      for (const c of cards.values()) freeze(c);
      setTimeout(() => { for (const c of cards.values()) freeze(c); }, 1000); // closed since
      const conn = document.getElementById("connection");
      text(conn, "run ended");
      conn.dataset.state = "ended";
    }
    const enc = status.encoder;
    text(document.getElementById("run"),
      `${enc.model || ""}${enc.random_weights ? " (random weights)" : ""} · up ${Math.round(status.uptime_s)} s`);
    const llm = document.getElementById("llm");
    llm.hidden = !status.llm;
    if (status.llm) {
      text(llm, status.llm.detail);
      llm.dataset.state = status.llm.state;
    }
    status.streams.forEach(showStream);
    // A stream removed while the run runs (the stream API): its card goes, its video stops.
    const present = new Set(status.streams.map((s) => s.name));
    for (const [name, entry] of cards) {
      if (present.has(name)) continue;
      rtc.stop(entry);
      entry.img.removeAttribute("src");
      entry.node.remove();
      cards.delete(name);
    }
    if (status.webrtc && status.webrtc.stamp_clock) { // a latency bench: measure every card
      for (const [name, c] of cards) {
        if (!c.metered) rtc.meter(name, c, () => c.mode);
        c.metered = true;
      }
    }
  }

  function addHistory(kind, rec) {
    if (rec.id <= lastId) return; // already shown (a replay after reconnecting)
    lastId = rec.id;
    const c = cards.get(rec.stream);
    if (!c) return; // a stream removed from the run: its replayed captions bring no card back
    const li = document.createElement("li");
    li.className = kind;
    li.dataset.id = rec.id;
    const when = document.createElement("time");
    const alerting = kind === "alert" || kind === "alert_cleared";
    text(when, alerting ? clock(rec.wall) : `${clock(rec.wall)} · ${fmt(rec.pts, 1, " s")}`);
    const body = document.createElement("span");
    text(body, kind === "alert" ? `alert: ${rec.query} (${fmt(rec.score, 2, "")})`
      : kind === "alert_cleared" ? `alert over: ${rec.query} (${rec.reason})`
      : kind === "summary" ? `summary: ${rec.text}` : rec.text);
    li.append(when, " ", body);
    c.history.prepend(li);
    while (c.history.children.length > HISTORY) c.history.lastElementChild.remove();
    if (kind === "caption") {
      text(c.caption, rec.text);
      text(c.source, `(${rec.source})`);
    }
    if (kind === "summary") { // the LLM's summary of the last window, citing [stream @ time]
      text(c.summary, `${clock(rec.start_wall)}–${clock(rec.wall)}: ${rec.text}`);
      c.summary.hidden = false;
    }
  }

  function connect() {
    const conn = document.getElementById("connection");
    const events = new EventSource(withToken("events"));
    events.addEventListener("open", () => { if (!runEnded) { text(conn, "live"); conn.dataset.state = "ok"; } });
    events.addEventListener("error", () => { // (after the run's end: retried, for the next run)
      if (runEnded) return;
      text(conn, "reconnecting…");
      conn.dataset.state = "down";
    });
    events.addEventListener("status", (e) => showStatus(JSON.parse(e.data)));
    events.addEventListener("caption", (e) => addHistory("caption", JSON.parse(e.data)));
    events.addEventListener("alert", (e) => addHistory("alert", JSON.parse(e.data)));
    events.addEventListener("alert_cleared", (e) => addHistory("alert_cleared", JSON.parse(e.data)));
    events.addEventListener("summary", (e) => addHistory("summary", JSON.parse(e.data)));
  }

  // A hidden tab stops its video streams: the server then encodes nothing for it.
  document.addEventListener("visibilitychange", () => {
    for (const [name, c] of cards) {
      if (document.hidden) {
        c.img.removeAttribute("src");
        rtc.stop(c);
      } else showVideo(name, c);
    }
  });
  window.addEventListener("pagehide", () => { for (const c of cards.values()) rtc.stop(c); });

  connect();
})();
