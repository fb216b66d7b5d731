// The archive's search page: a query box, a grid of the best moments (thumbnail, stream, time,
// caption), and a player that plays a moment's recording from that moment. Plain JS, no build.
"use strict";

(() => {
  const token = new URLSearchParams(location.search).get("token");
  const $ = (id) => document.getElementById(id);
  let encoderReady = false;
  let asked = 0; // the latest search: an older answer arriving late is dropped
  let wanted = null; // the hit the player is to show once its file's metadata is in
  let addressStream = null; // ?stream= of the address, chosen once the list has it

  // <img> and <video> cannot send headers: the token travels in the query.
  function withToken(path) {
    if (!token) return path;
    return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
  }

  function text(el, value) {
    el.textContent = value == null ? "" : String(value);
  }

  function say(message, error = false) {
    text($("status"), message);
    $("status").classList.toggle("error", error);
  }

  function when(wall) {
    return new Date(wall * 1000).toLocaleString();
  }

  async function getJson(path) {
    const response = await fetch(withToken(path));
    let body = null;
    try { body = await response.json(); } catch { /* not JSON: the status says it */ }
    if (!response.ok) {
      throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
    }
    return body;
  }

  async function loadArchive() {
    let info;
    try {
      info = await getJson("api/archive");
    } catch (error) {
      text($("archive"), `archive not readable yet: ${error.message}`);
      setTimeout(loadArchive, 5000); // a run's archive is made once its first moments come
      return;
    }
    encoderReady = info.encoder_ready;
    const span = info.oldest == null ? "" : `, ${when(info.oldest)} – ${when(info.newest)}`;
    const streams = info.streams.length === 1 ? "1 stream" : `${info.streams.length} streams`;
    text($("archive"), `${info.rows} moments of ${streams}${span} · ${info.encoder}`);
    const select = $("stream");
    const chosen = select.value;
    select.replaceChildren(select.options[0]);
    for (const s of info.streams) {
      select.add(new Option(`${s.stream} (${s.rows})`, s.stream));
    }
    select.value = addressStream ?? chosen;
    addressStream = null;
    if (info.live) {
      $("live").href = withToken("./");
      $("live").hidden = false;
    }
  }

  async function search(event) {
    event.preventDefault();
    const form = new FormData($("search"));
    const params = new URLSearchParams();
    for (const [name, value] of form) {
      if (String(value).trim()) params.set(name, String(value).trim());
    }
    toAddress(params);
    const mine = ++asked;
    say(encoderReady ? "searching…"
      : "loading the archive's encoder for the first search (a few seconds)…");
    let answer;
    try {
      answer = await getJson(`api/search?${params}`);
    } catch (error) {
      if (mine === asked) say(error.message, true);
      return;
    }
    if (mine !== asked) return;
    encoderReady = true;
    const n = answer.hits.length;
    say(n ? `${n} moment${n === 1 ? "" : "s"} in ${answer.took_s.toFixed(2)} s`
      : "no moments found");
    $("hits").replaceChildren(...answer.hits.map(card));
  }

  // A question: the LLM's answer, citing moments as [stream @ time], above the moments it was
  // given (the cited ones marked); without an answer, why, and the moments still.
  async function ask(event) {
    event.preventDefault();
    const params = new URLSearchParams({ q: $("question").value.trim() });
    for (const name of ["stream", "since", "until"]) {
      const value = $(name).value.trim();
      if (value) params.set(name, value);
    }
    const mine = ++asked;
    say(encoderReady ? "asking…" : "loading the archive's encoder, then asking…");
    let reply;
    try {
      reply = await getJson(`api/ask?${params}`);
    } catch (error) {
      if (mine === asked) say(error.message, true);
      return;
    }
    if (mine !== asked) return;
    encoderReady = true;
    $("answer").hidden = false;
    $("answer-text").classList.toggle("error", reply.answer == null);
    text($("answer-text"), reply.answer != null ? reply.answer : `no answer: ${reply.error}`);
    const cited = new Set(reply.citations.map((c) => c.number));
    say(`${reply.hits.length} moments given to the LLM, ${cited.size} cited`);
    $("hits").replaceChildren(...reply.hits.map((hit, i) => {
      const node = card(hit);
      node.classList.toggle("cited", cited.has(i + 1));
      return node;
    }));
  }

  // A search has an address to share or bookmark: /search?q=red+van&since=2h+ago fills the
  // form and runs it, and every search writes its fields into the address bar.
  const FIELDS = ["q", "stream", "since", "until", "tag", "k"];

  function fromAddress() {
    const given = new URLSearchParams(location.search);
    for (const name of FIELDS) {
      const value = given.get(name);
      if (value != null && name !== "stream") $(name).value = value;
    }
    addressStream = given.get("stream");
    return Boolean((given.get("q") || "").trim());
  }

  function toAddress(params) {
    const shown = new URLSearchParams(params);
    if (token) shown.set("token", token); // it was in the address already: keep it working
    history.replaceState(null, "", `${location.pathname}?${shown}`);
  }

  function card(hit) {
    const node = $("hit-card").content.firstElementChild.cloneNode(true);
    const q = (sel) => node.querySelector(sel);
    node.dataset.stream = hit.stream;
    node.dataset.wall = hit.wall_time;
    node.dataset.mediaTime = hit.media_time;
    const img = q(".thumb");
    if (hit.thumbnail) {
      img.src = withToken(hit.thumbnail);
      img.alt = `${hit.stream} at ${when(hit.wall_time)}`;
    } else {
      img.hidden = true;
      q(".no-thumb").hidden = false;
    }
    text(q(".stream"), hit.stream);
    const time = q("time");
    time.dateTime = hit.time;
    text(time, `${when(hit.wall_time)} · ${hit.media_time.toFixed(1)} s`);
    text(q(".caption"), hit.caption || hit.tags.slice(0, 3).map((t) => t[0]).join(", "));
    const open = q(".open");
    if (hit.media) {
      node.dataset.offset = hit.media.offset;
      open.title = `play ${hit.media.kind === "file" ? "the file" : "the recording"} from here`;
      open.addEventListener("click", () => play(hit, node));
    } else {
      // Pruned, moved or changed: say so rather than offer a player that cannot play.
      node.classList.add("gone");
      open.disabled = true;
      text(q(".gone"), hit.media_gone);
      q(".gone").hidden = false;
    }
    return node;
  }

  function play(hit, node) {
    const video = $("video");
    for (const other of document.querySelectorAll(".hit.playing")) other.classList.remove("playing");
    node.classList.add("playing");
    $("player").hidden = false;
    $("playing").classList.remove("error");
    text($("playing"), `${hit.stream} · ${when(hit.wall_time)}${hit.caption ? ` · ${hit.caption}` : ""}`);
    const src = withToken(hit.media.url);
    wanted = hit;
    video.dataset.offset = hit.media.offset;
    if (video.dataset.src === src && video.readyState >= 1) {
      seekAndPlay(video); // the same file: only move
    } else {
      video.dataset.src = src;
      video.src = src;
    }
    $("player").scrollIntoView({ block: "nearest" });
  }

  function seekAndPlay(video) {
    if (!wanted) return;
    video.currentTime = wanted.media.offset;
    // Browsers may refuse sound without a gesture they trust: then play it muted.
    video.play().catch(() => {
      video.muted = true;
      return video.play();
    }).catch((error) => showPlayError(`cannot play: ${error.message}`));
  }

  function showPlayError(message) {
    $("playing").classList.add("error");
    text($("playing"), message);
  }

  const video = $("video");
  video.addEventListener("loadedmetadata", () => seekAndPlay(video));
  video.addEventListener("error", () => {
    const why = video.error && video.error.message ? ` (${video.error.message})` : "";
    showPlayError(`this moment's video cannot be played${why}: it may have been removed since `
      + "the search, or the browser cannot decode its format");
  });
  $("search").addEventListener("submit", search);
  $("ask").addEventListener("submit", ask);
  const searchNow = fromAddress();
  loadArchive().then(() => { if (searchNow) $("search").requestSubmit(); });
})();
