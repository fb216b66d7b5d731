"""The archive on the web: `/search` and what it reads, on a running viewer (`--serve` with
`--archive`) or alone (`streamer serve --archive DIR`, `ArchiveServer`).

Routes (a fixed table; a moment is named by `?stream=NAME&at=WALL_TIME`, never by a path)::

    /search                         the page: a query box, a grid of moments, a player
    /static/search.js, search.css   its script and style
    /api/archive                    the archive as JSON: encoder, streams, span, rows
    /api/search?q=..&k=..&stream=..&since=..&until=..&tag=..   the best moments as JSON
    /archive/thumbnail.jpg?stream=..&at=..   a moment's thumbnail, from the index
    /archive/media?stream=..&at=..  the file a moment plays in (HTTP range requests): its
                                    recording segment, or the input file itself
    /api/ask?q=..&k=..&stream=..&since=..&until=..   a question answered by the LLM from the
                                    best moments and summaries, citing them
                                    (`streamer.archive.ask`; without an LLM, the moments)

Everything that touches the archive runs on two low-priority threads of its own: a search
embeds the query with the archive's encoder, which the first search loads (seconds: the page
says so), and a flood of searches must neither take the cores the video uses nor fill the
event loop's default thread pool, which the run's stages use. The guard, the token rule and
the headers are the viewer's (`streamer.watch.web._http`).

A new route that reads the archive (an answer to a question, say) is a method here calling
the reader in a thread, added in `add_to`; `ArchiveReader.hit_json` is how the page draws a
moment, so whatever returns moments can hand them to the page the same way.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streamer.core.background import LowPriorityPool
from streamer.errors import ArchiveError, ConfigError
from streamer.watch.web._http import guarded_app, json_response, listen, page_for
from streamer.watch.web.archive_reader import ArchiveReader, MomentKey
from streamer.watch.web.options import ServeConfig

if TYPE_CHECKING:
    from streamer.archive.embedder import Embedder

__all__ = ["ArchiveRoutes", "ArchiveServer"]

log = logging.getLogger("streamer.watch.web")

_STATIC = {"search.js": "text/javascript", "search.css": "text/css"}
DEFAULT_K = 24
MAX_K = 200


class ArchiveRoutes:
    """The search page and its API over one archive.

    Args:
        reader: the archive.
        token_required: the server has a token (the page passes it along).
        live: the page is part of a run's viewer (it links back to the live page).
    """

    def __init__(
        self, reader: ArchiveReader, *, token_required: bool, live: bool, llm: Any = None
    ) -> None:
        self.reader = reader
        self.token_required = token_required
        self.live = live
        self.llm = llm
        self._pool = LowPriorityPool("archive-reader", workers=2)
        folder = importlib.resources.files("streamer.watch.web") / "static"
        self._page = (folder / "search.html").read_bytes()
        self._static = {name: (folder / name).read_bytes() for name in _STATIC}

    @classmethod
    def of(
        cls, root: str | os.PathLike[str], config: ServeConfig, *, live: bool,
        device: str | None = None, embedder: Embedder | None = None, llm: Any = None,
        export_cache: str | os.PathLike[str] | None = None,
    ) -> ArchiveRoutes:  # fmt: skip
        """The routes of the archive at `root`, served under `config`'s token rule (`device`,
        `embedder` and `export_cache`: as `ArchiveReader` takes them; `llm`: the `LlmConfig`
        questions go to, None: `/api/ask` answers with the moments only)."""
        reader = ArchiveReader(root, device=device, embedder=embedder,
                               export_cache=export_cache)  # fmt: skip
        return cls(reader, token_required=config.token is not None, live=live, llm=llm)

    @classmethod
    def of_run(
        cls, root: str | os.PathLike[str], config: ServeConfig, run: Any, llm: Any = None
    ) -> ArchiveRoutes:
        """The routes of a running pipeline's archive, beside its live page: a search embeds
        its query on the run's own model (`run.encoder`, in turn with the frames), so no
        second model is loaded (once the run has ended, the archive's encoder is loaded as
        `streamer serve` loads it). Called on the run's event loop."""
        from streamer.archive.embedder import Embedder
        from streamer.archive.store import EncoderSpec

        embedder = None
        writer = getattr(run, "archive", None)  # the run's ArchiveObserver: what it records
        # A cluster's driver sees the pool only through a status view, which embeds nothing:
        # its page loads the archive's encoder at the first search, as `streamer serve` does.
        if writer is not None and hasattr(run.encoder, "embed_images"):
            spec = EncoderSpec.of(run.encoder.model, writer.weights)
            choice = run.config.encoder
            after = functools.partial(Embedder.load, spec, Path(root), choice.device,
                                      choice.export_cache)  # fmt: skip
            embedder = Embedder.of_service(run.encoder, asyncio.get_running_loop(), spec, after)
        return cls.of(root, config, live=True, embedder=embedder, llm=llm)

    def add_to(self, app: web.Application) -> None:
        """Add the routes to a viewer's application (one made by `guarded_app`)."""
        app.router.add_get("/search", self.page)
        for name in _STATIC:
            app.router.add_get(f"/static/{name}", self._static_file(name))
        app.router.add_get("/api/archive", self.api_archive)
        app.router.add_get("/api/search", self.api_search)
        app.router.add_get("/archive/thumbnail.jpg", self.thumbnail)
        app.router.add_get("/archive/media", self.media)
        app.router.add_get("/api/ask", self.api_ask)
        app.on_cleanup.append(self._close)

    async def _close(self, app: web.Application) -> None:
        await asyncio.to_thread(self._pool.shutdown)  # after a search in progress

    # -- routes --------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        return page_for(request, self._page, self.token_required)

    async def api_archive(self, request: web.Request) -> web.Response:
        info = await self._in_thread(self.reader.info)
        return json_response({**info, "live": self.live})

    async def api_search(self, request: web.Request) -> web.Response:
        query = request.query
        filters = {name: query.get(name, "").strip() or None for name in
                   ("stream", "since", "until", "tag")}  # fmt: skip
        k = _k(query.get("k"))
        loading = not self.reader.encoder_ready
        started = time.monotonic()
        hits = await self._in_thread(self.reader.search, query.get("q"), k=k, **filters)
        took = round(time.monotonic() - started, 3)
        return json_response({"hits": hits, "took_s": took, "loaded_encoder": loading})

    async def api_ask(self, request: web.Request) -> web.Response:
        """The answer, its citations and the moments it drew on (as `/api/search` draws them);
        `answer` is null and `error` says why when no LLM answered."""
        from streamer.archive.ask import ask_async

        query = request.query
        filters = {name: query.get(name, "").strip() or None for name in
                   ("stream", "since", "until")}  # fmt: skip
        archive = await self._in_thread(self.reader.ready)
        try:
            answer = await ask_async(archive, query.get("q", ""), llm=self.llm,
                                     k=_k(query.get("k"), default=8), offload=self._pool.run,
                                     **filters)  # fmt: skip
        except ConfigError as exc:
            raise _json_error(web.HTTPBadRequest, str(exc)) from exc
        except ArchiveError as exc:
            raise _json_error(web.HTTPServiceUnavailable, str(exc)) from exc
        hits = await self._in_thread(lambda: [self.reader.hit_json(h) for h in answer.hits])
        return json_response({
            "question": answer.question, "answer": answer.render(), "error": answer.error,
            "citations": [{"number": c.number, "stream": c.stream, "wall": c.wall_time,
                           "media_time": c.media_time} for c in answer.citations],
            "hits": hits,
        })  # fmt: skip

    async def thumbnail(self, request: web.Request) -> web.Response:
        key = _key(request)
        jpeg = await self._in_thread(self.reader.thumbnail, key)
        if jpeg is None:
            raise web.HTTPNotFound(text=f"no thumbnail of a moment of {key.stream!r} at {key.wall}")
        # A moment's thumbnail never changes: the browser may keep it.
        return web.Response(
            body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )

    async def media(self, request: web.Request) -> web.StreamResponse:
        key = _key(request)
        media = await self._in_thread(self.reader.media, key)
        if media is None:
            raise web.HTTPNotFound(
                text=f"this archive has no moment of stream {key.stream!r} at {key.wall}"
            )
        if media.path is None:
            raise web.HTTPGone(text=f"{media.gone}")
        # aiohttp answers Range requests (206 with the asked bytes), If-Range and HEAD.
        return web.FileResponse(media.path, headers={"Cache-Control": "no-cache"})

    # -- helpers -------------------------------------------------------------------------------

    def _static_file(self, name: str):
        async def serve(request: web.Request) -> web.Response:
            return web.Response(
                body=self._static[name], content_type=_STATIC[name], charset="utf-8"
            )

        return serve

    async def _in_thread(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a reader call off the event loop; its errors become HTTP answers: a bad query
        400, an archive that cannot be read (not made yet, damaged) 503."""
        try:
            return await self._pool.run(call, *args, **kwargs)
        except ConfigError as exc:
            raise _json_error(web.HTTPBadRequest, str(exc)) from exc
        except ArchiveError as exc:
            raise _json_error(web.HTTPServiceUnavailable, str(exc)) from exc


class ArchiveServer:
    """`streamer serve --archive DIR`: the archive's search page, with no run.

    Args:
        root: the archive directory.
        config: where to listen and the optional token (the viewer's `--serve` options).
        device: where the archive's encoder runs (None: CUDA when present).
        export_cache: where runs keep encoder exports (the first search opens one left there).
        embedder: the archive's encoder, already loaded (else the first search loads it).
        llm: the `LlmConfig` the page's questions go to (None: answered with moments only).

    Attributes:
        url: the search page's address once started, else None.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        config: ServeConfig,
        *,
        device: str | None = None,
        embedder: Embedder | None = None,
        llm: Any = None,
        export_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config
        self.routes = ArchiveRoutes.of(
            root, config, live=False, device=device, embedder=embedder, llm=llm,
            export_cache=export_cache,
        )  # fmt: skip
        self.url: str | None = None
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        """The application: the guard, `/search` and its API, `/` leading to `/search`."""
        app = guarded_app(self.config)
        self.routes.add_to(app)
        app.router.add_get("/", _to_search)
        app.router.add_get("/healthz", _healthz)
        return app

    async def start(self) -> None:
        """Listen (the archive is opened by the first request that needs it).

        Raises:
            ConfigError: the address cannot be listened on.
        """
        self._runner, url = await listen(self.app(), self.config)
        self.url = url + "search"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _to_search(request: web.Request) -> web.Response:
    query = request.query_string  # the token, when the page was opened with one
    raise web.HTTPFound("search" + (f"?{query}" if query else ""))


async def _healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


def _key(request: web.Request) -> MomentKey:
    try:
        return MomentKey.parse(request.query)
    except ValueError as exc:
        raise _json_error(web.HTTPBadRequest, str(exc)) from None


def _k(value: str | None, default: int = DEFAULT_K) -> int:
    if not value:
        return default
    try:
        k = int(value)
    except ValueError:
        raise _json_error(web.HTTPBadRequest, f"k must be a whole number, got {value!r}") from None
    if not 1 <= k <= MAX_K:
        raise _json_error(web.HTTPBadRequest, f"k must be in 1..{MAX_K}, got {k}")
    return k


def _json_error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(
        text=json_response({"error": message}).text,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
