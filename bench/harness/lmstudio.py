"""An in-process LM Studio double (aiohttp) that injects the faults a real server rarely shows.

It follows `docs/llm-protocol.md` §8: the OpenAI routes (`GET /v1/models`,
`POST /v1/chat/completions`, plain and streamed), LM Studio's REST metadata
(`GET /api/v1/models`, `GET /api/v0/models`, `POST /api/v1/models/load`),
`GET /lmstudio-greeting`, and LM Studio's catch-all, which answers unknown routes with **200**
and an error body. Other flavours imitate llama.cpp's `llama-server` (`/props`, its error
envelope and its 404s), Ollama (`/api/version`, `/api/show`), vLLM
(`max_model_len` in the model list) and a bare OpenAI-compatible server.

Knobs are plain attributes, changed at any time by the test. One-shot faults go in `faults`,
consumed one per chat request:

=============  ===========================================================================
fault          the chat request gets
=============  ===========================================================================
"error-200"    200 with an error body (LM Studio's prediction-stream failure)
"loading-503"  503 "Loading model" (llama.cpp's envelope, as while a model loads)
"500"          500 with an error object
"429"          429 "too many requests"
"drop"         the headers and half a body, then the connection is closed
"garbage"      200 with a body that is not JSON
"empty"        200 with an empty answer (LM Studio's silent context overflow)
"non-utf8"     200 with a JSON answer whose text holds bytes that are not UTF-8
"hang"         nothing for an hour (a read timeout)
=============  ===========================================================================

Every request is counted per route in `counts` ("POST /v1/chat/completions"), chat bodies are
kept in `chat_bodies`, and `max_in_flight` records the most chat requests served at once.
`stop()` and `start()` take the server down and bring it back on the same port.

Example:
    >>> async with LmStudioDouble() as server:  # doctest: +SKIP
    ...     server.faults.append("loading-503")
    ...     client = LlmClient(LlmConfig(url=server.url), session)
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

NO_MODELS = (
    "No models loaded. Please load a model in the developer page or use the 'lms load' command."
)
NO_IMAGES = "Model does not support images. Please use a model that does."
VISION_ADDON = (
    "Error in iterating prediction stream: ValueError: Vision add-on is not loaded, but images "
    "were provided for processing"
)
BAD_IMAGE = "'url' field must be a base64 encoded image."
LLAMA_CPP_NO_IMAGES = (
    "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj"
)
FLAVORS = ("lmstudio", "lmstudio-0.3", "llama.cpp", "ollama", "vllm", "openai")


@dataclass
class FakeModel:
    """A model the double serves.

    `vision` decides what an image gets; `claims_vision` (None: the same) is what the metadata
    says, so a model can claim vision it lacks (LM Studio's gpt-oss without its vision add-on).
    """

    id: str
    vision: bool = False
    claims_vision: bool | None = None
    loaded: bool = True
    context_length: int = 4096
    type: str = "llm"  # "llm" or "embedding"
    parallel: int = 4


def default_models() -> list[FakeModel]:
    return [
        FakeModel("qwen2-vl-2b-instruct", vision=True),
        FakeModel("llama-3.2-1b-instruct", vision=False, loaded=False),
        FakeModel("text-embedding-nomic-embed-text-v1.5", type="embedding", loaded=False),
    ]


def describe_request(body: dict[str, Any], count: int) -> str:
    """The default answer: says which request it was and whether it carried an image."""
    image = any(
        isinstance(m.get("content"), list)
        and any(p.get("type") == "image_url" for p in m["content"])
        for m in body.get("messages", [])
    )
    return f"Caption {count} by {body.get('model')}, {'with' if image else 'without'} an image."


@dataclass
class LmStudioDouble:
    """The double. Start it with `await start()` (or `async with`), read `url`, then `stop()`.

    Attributes:
        models: served models, by id.
        flavor: "lmstudio" (0.4: REST v1 and v0), "lmstudio-0.3" (REST v0 only), "llama.cpp"
            (`/props`, its error envelope), "ollama" (`/api/show`), "vllm" (`max_model_len`),
            "openai" (only the OpenAI routes).
        jit_load_delay_s: the first chat request for a model that is not loaded waits this
            long, then the model shows as loaded.
        jit: whether requests load models that are not loaded (else "No models loaded").
        no_models_loaded: every model shows as not loaded and chat requests fail with
            "No models loaded" (JIT off or failed).
        require_auth: the API token every request must carry as `Authorization: Bearer`.
        unknown_model_mode: "invalid" (400 model_not_found), "legacy404" (404) or "silent"
            (the first loaded model answers).
        delay_s: every chat answer takes this long (a slow server).
        hang_after: chat requests after the first `hang_after` get no answer for an hour (a
            server that stops answering mid-run); None: never.
        reject_webp: a WebP data URI (or undecodable base64) gets 400.
        max_pixels: larger images get 400 (LM Studio's 5120² check).
        answer: makes the answer text from the request body and the chat request count.
        faults: one-shot faults, consumed one per chat request (see the module docstring).
    """

    models: dict[str, FakeModel] = field(
        default_factory=lambda: {m.id: m for m in default_models()}
    )
    flavor: str = "lmstudio"
    jit_load_delay_s: float = 0.0
    jit: bool = True
    no_models_loaded: bool = False
    require_auth: str | None = None
    unknown_model_mode: str = "invalid"
    delay_s: float = 0.0
    hang_after: int | None = None
    reject_webp: bool = True
    max_pixels: int = 26_214_400
    parallel: int = 4
    answer: Callable[[dict[str, Any], int], str] = describe_request
    faults: deque[str] = field(default_factory=deque)
    counts: Counter[str] = field(default_factory=Counter)
    chat_bodies: list[dict[str, Any]] = field(default_factory=list)
    max_in_flight: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {FLAVORS}, got {self.flavor!r}")
        if isinstance(self.models, list):
            self.models = {m.id: m for m in self.models}
        self._runner: web.AppRunner | None = None
        self._in_flight = 0
        self._slots: asyncio.Semaphore | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The OpenAI base URL (`http://127.0.0.1:PORT/v1`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Serve on 127.0.0.1 (a free port the first time, the same port after a `stop`)."""
        app = web.Application(middlewares=[self._count_and_auth])
        app.router.add_route("*", "/{tail:.*}", self._route)
        # A short shutdown timeout: `stop()` must not wait for a hanging request.
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._slots = asyncio.Semaphore(self.parallel)
        return self.url

    async def stop(self) -> None:
        """Stop serving: connections are refused until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LmStudioDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def chat_count(self) -> int:
        return self.counts["POST /v1/chat/completions"]

    # -- routing -------------------------------------------------------------------------------

    @web.middleware
    async def _count_and_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.counts[f"{request.method} {request.path}"] += 1
        if self.require_auth and request.headers.get("Authorization") != (
            f"Bearer {self.require_auth}"
        ):
            return _json(401, _auth_error())
        return await handler(request)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        routes = self._routes()
        handler = routes.get((request.method, request.path))
        if handler is None:
            return self._not_found(request)
        return await handler(request)

    def _routes(self) -> dict[tuple[str, str], Callable[[web.Request], Any]]:
        routes: dict[tuple[str, str], Callable[[web.Request], Any]] = {
            ("GET", "/v1/models"): self._v1_models,
            ("POST", "/v1/chat/completions"): self._chat,
        }
        if self.flavor.startswith("lmstudio"):
            routes[("GET", "/api/v0/models")] = self._v0_models
            routes[("GET", "/lmstudio-greeting")] = self._greeting
        if self.flavor == "lmstudio":
            routes[("GET", "/api/v1/models")] = self._api_v1_models
            routes[("POST", "/api/v1/models/load")] = self._load
        if self.flavor == "llama.cpp":
            routes[("GET", "/props")] = self._props
            routes[("GET", "/health")] = self._health
        if self.flavor == "ollama":
            routes[("GET", "/api/version")] = self._ollama_version
            routes[("POST", "/api/show")] = self._ollama_show
        return routes

    def _not_found(self, request: web.Request) -> web.Response:
        if self.flavor.startswith("lmstudio"):
            # LM Studio's catch-all: 200, with the error in the body.
            return _json(200, {"error": f"Unexpected endpoint or method. ({request.method} "
                                        f"{request.path})"})  # fmt: skip
        if self.flavor == "llama.cpp":
            return _json(404, {"error": {"code": 404, "message": "File Not Found",
                                         "type": "not_found_error"}})  # fmt: skip
        return web.Response(status=404, text="404: Not Found")

    # -- metadata ------------------------------------------------------------------------------

    def _visible(self) -> list[FakeModel]:
        return list(self.models.values())

    def _is_loaded(self, model: FakeModel) -> bool:
        return model.loaded and not self.no_models_loaded

    async def _v1_models(self, request: web.Request) -> web.Response:
        owner = {"lmstudio": "organization_owner", "lmstudio-0.3": "organization_owner",
                 "vllm": "vllm", "ollama": "library"}.get(self.flavor, "llamacpp")  # fmt: skip
        data = [{"id": m.id, "object": "model", "owned_by": owner} for m in self._visible()]
        if self.flavor == "vllm":
            for entry, model in zip(data, self._visible(), strict=True):
                entry["max_model_len"] = model.context_length
        return _json(200, {"object": "list", "data": data})

    async def _api_v1_models(self, request: web.Request) -> web.Response:
        return _json(200, {"models": [self._v1_entry(m) for m in self._visible()]})

    def _v1_entry(self, model: FakeModel) -> dict[str, Any]:
        instances = []
        if self._is_loaded(model):
            config = {"context_length": model.context_length, "parallel": model.parallel}
            instances = [{"id": model.id, "config": config}]
        entry: dict[str, Any] = {
            "type": model.type,
            "publisher": "test",
            "key": model.id,
            "display_name": model.id,
            "loaded_instances": instances,
            "max_context_length": max(model.context_length, 32768),
            "format": "gguf",
        }
        if model.type == "llm":
            entry["capabilities"] = {"vision": _claims(model), "trained_for_tool_use": False}
        return entry

    async def _v0_models(self, request: web.Request) -> web.Response:
        data = []
        for m in self._visible():
            kind = "embeddings" if m.type == "embedding" else ("vlm" if _claims(m) else "llm")
            entry = {"id": m.id, "object": "model", "type": kind, "publisher": "test",
                     "arch": "test", "compatibility_type": "gguf", "quantization": "Q4_K_M",
                     "state": "loaded" if self._is_loaded(m) else "not-loaded",
                     "max_context_length": max(m.context_length, 32768)}  # fmt: skip
            if self._is_loaded(m):
                entry["loaded_context_length"] = m.context_length
            data.append(entry)
        return _json(200, {"object": "list", "data": data})

    async def _greeting(self, request: web.Request) -> web.Response:
        return _json(200, {"lmstudio": True})

    async def _props(self, request: web.Request) -> web.Response:
        model = next(iter(self.models.values()))
        return _json(200, {
            "default_generation_settings": {"n_ctx": model.context_length},
            "total_slots": self.parallel,
            "model_path": f"/models/{model.id}.gguf",
            "modalities": {"vision": _claims(model), "audio": False},
        })  # fmt: skip

    async def _ollama_version(self, request: web.Request) -> web.Response:
        return _json(200, {"version": "0.12.3"})

    async def _ollama_show(self, request: web.Request) -> web.Response:
        model = self.models.get((await request.json()).get("model"))
        if model is None:
            return _json(404, {"error": "model not found"})
        capabilities = ["completion", "vision"] if _claims(model) else ["completion"]
        info = {"general.architecture": "gemma3", "gemma3.context_length": model.context_length}
        return _json(200, {"capabilities": capabilities, "model_info": info})

    async def _health(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _load(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = self.models.get(body.get("model"))
        if model is None:
            return _json(400, _model_not_found(str(body.get("model")), self._visible()))
        started = time.monotonic()
        await self._jit_load(model)
        return _json(200, {"type": model.type, "instance_id": model.id, "status": "loaded",
                           "load_time_seconds": time.monotonic() - started})  # fmt: skip

    async def _jit_load(self, model: FakeModel) -> None:
        if not model.loaded:
            await asyncio.sleep(self.jit_load_delay_s)
            model.loaded = True

    # -- chat ----------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _json(400, {"error": "Invalid JSON in request body"})
        self.chat_bodies.append(body)
        count = self.chat_count()
        assert self._slots is not None
        async with self._slots:  # FIFO: requests beyond `parallel` queue here, as in LM Studio
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                return await self._chat_answer(request, body, count)
            finally:
                self._in_flight -= 1

    async def _chat_answer(
        self, request: web.Request, body: dict[str, Any], count: int
    ) -> web.StreamResponse:
        if self.hang_after is not None and count > self.hang_after:
            await asyncio.sleep(3600)
        if self.faults:
            fault = self.faults.popleft()
            response = await self._fault(request, fault)
            if response is not None:
                return response
        model, refusal = await self._pick_model(body)
        if refusal is not None:
            return refusal
        assert model is not None
        images, refusal = self._images(body, model)
        if refusal is not None:
            return refusal
        tokens = _estimate_tokens(body, images)
        await asyncio.sleep(self.delay_s)
        if tokens > model.context_length:
            message = (
                f"Input does not fit in context length. The input has {tokens} tokens, but the "
                f"context length only supports {model.context_length} tokens."
            )
            if body.get("stream"):
                return await _sse_error(request, message)
            return _json(400, {"error": message})
        text = self.answer(body, count)
        if body.get("stream"):
            return await _sse_answer(request, model.id, text)
        return _json(200, _completion(model.id, text, tokens))

    async def _pick_model(
        self, body: dict[str, Any]
    ) -> tuple[FakeModel | None, web.Response | None]:
        if self.no_models_loaded:
            return None, _json(400, {"error": NO_MODELS})
        name = str(body.get("model"))
        # LM Studio accepts "publisher/key" and "key@quant" for a model listed as "key".
        model = self.models.get(name) or self.models.get(name.rsplit("/", 1)[-1].split("@")[0])
        if model is None:
            loaded = [m for m in self.models.values() if self._is_loaded(m)]
            if self.unknown_model_mode == "silent" and loaded:
                return loaded[0], None
            status = 404 if self.unknown_model_mode == "legacy404" else 400
            return None, _json(status, _model_not_found(str(name), self._visible()))
        if not model.loaded and not self.jit:
            return None, _json(400, {"error": NO_MODELS})
        await self._jit_load(model)
        return model, None

    def _images(
        self, body: dict[str, Any], model: FakeModel
    ) -> tuple[list[tuple[int, int]], web.Response | None]:
        sizes = []
        for message in body.get("messages", []):
            content = message.get("content")
            parts = content if isinstance(content, list) else []
            for part in parts:
                if part.get("type") != "image_url":
                    continue
                url = (part.get("image_url") or {}).get("url", "")
                size = _image_size(url, self.reject_webp)
                if size is None:
                    return [], _json(400, {"error": BAD_IMAGE})
                if size[0] * size[1] > self.max_pixels:
                    return [], _json(400, {"error": f"Image too large: {size[0]}x{size[1]}"})
                sizes.append(size)
        if sizes and not model.vision:
            if self.flavor == "llama.cpp":
                return [], _json(500, {"error": {"code": 500, "message": LLAMA_CPP_NO_IMAGES,
                                                 "type": "server_error"}})  # fmt: skip
            if _claims(model):
                return [], _json(200, {"error": {"message": VISION_ADDON}, "message": VISION_ADDON})
            return [], _json(200, {"error": NO_IMAGES})
        return sizes, None

    async def _fault(self, request: web.Request, fault: str) -> web.StreamResponse | None:
        if fault == "error-200":
            message = "Error in iterating prediction stream: RuntimeError: the engine crashed"
            return _json(200, {"error": {"message": message}, "message": message})
        if fault == "loading-503":
            return _json(503, {"error": {"code": 503, "message": "Loading model",
                                         "type": "unavailable_error"}})  # fmt: skip
        if fault == "500":
            return _json(500, {"error": {"message": "boom", "type": "internal_server_error"}})
        if fault == "429":
            return _json(429, {"error": {"message": "Too many requests", "type": "rate_limit"}})
        if fault == "garbage":
            return web.Response(status=200, text='{"choices": [{"mess\x00<html>',
                                content_type="application/json")  # fmt: skip
        if fault == "non-utf8":
            good = json.dumps(_completion("qwen2-vl-2b-instruct", "A cat MARK on a mat", 10))
            body = good.encode().replace(b"MARK", b"\xff\xfe\xc3")
            return web.Response(status=200, body=body, content_type="application/json")
        if fault == "empty":
            return _json(200, _completion("qwen2-vl-2b-instruct", "", 10))
        if fault == "hang":
            await asyncio.sleep(3600)
        if fault == "drop":
            return await _drop(request)
        raise ValueError(f"unknown fault {fault!r}")


def _claims(model: FakeModel) -> bool:
    return model.vision if model.claims_vision is None else model.claims_vision


def _json(status: int, body: object) -> web.Response:
    return web.json_response(body, status=status)


def _auth_error() -> dict[str, Any]:
    return {"error": {"type": "invalid_request", "code": "invalid_api_key",
                      "message": "An LM Studio API token is required to make requests to this "
                                 "server. Provide one in the Authorization header."}}  # fmt: skip


def _model_not_found(name: str, models: list[FakeModel]) -> dict[str, Any]:
    listed = ", ".join(m.id for m in models)
    return {"error": {"message": f'Invalid model identifier "{name}". Please specify a valid '
                                 f"downloaded model (e.g., {listed}).",
                      "type": "invalid_request_error", "param": "model",
                      "code": "model_not_found"}}  # fmt: skip


def _completion(model: str, text: str, prompt_tokens: int) -> dict[str, Any]:
    completion_tokens = len(text.split())
    return {
        "id": f"chatcmpl-{time.monotonic_ns():x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        "stats": {},
        "system_fingerprint": model,
    }  # fmt: skip


def _image_size(url: str, reject_webp: bool) -> tuple[int, int] | None:
    if not url.startswith("data:") or ";base64," not in url:
        return None
    head, data = url.split(";base64,", 1)
    if reject_webp and head.endswith("webp"):
        return None
    try:
        with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as image:
            return image.size
    except (ValueError, OSError):
        return None


def _estimate_tokens(body: dict[str, Any], images: list[tuple[int, int]]) -> int:
    # About four characters a token, and a few hundred tokens an image, as vision models use.
    chars = 0
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if p.get("type") == "text")
    return math.ceil(chars / 4) + 256 * len(images)


async def _sse_answer(request: web.Request, model: str, text: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model, "system_fingerprint": model}  # fmt: skip
    words = text.split(" ")
    for i, word in enumerate(words):
        delta = {"role": "assistant", "content": word if i == 0 else " " + word}
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": None}]}  # fmt: skip
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    last = {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                 "finish_reason": "stop"}]}  # fmt: skip
    await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
    await response.write_eof()
    return response


async def _sse_error(request: web.Request, message: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    data = json.dumps({"error": {"message": message}, "message": message})
    await response.write(f"event: error\ndata: {data}\n\n".encode())
    await response.write_eof()
    return response


async def _drop(request: web.Request) -> web.StreamResponse:
    """Headers that promise a body, half of it, then the connection closes."""
    body = json.dumps(_completion("x", "this answer never arrives whole", 10)).encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    assert request.transport is not None
    request.transport.close()
    return response
