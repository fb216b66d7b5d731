"""Server discovery: which server answers, its models, which one to use, and what it can do.

`discover` asks `GET {base}/models` (which also checks the URL and the API key), then the
routes only some servers have, in this order, stopping at the first that answers:

========================  =============================  =====================================
route                      server                         gives
========================  =============================  =====================================
GET /api/v1/models         LM Studio 0.4+                 loaded instances, vision, context,
                                                          parallel slots
GET /api/v0/models         LM Studio 0.3.6+               loaded state, type "vlm", context
GET /lmstudio-greeting     LM Studio (REST API off)       the kind only
GET /props                 llama.cpp llama-server         modalities.vision, n_ctx, total_slots
GET /api/version           Ollama                         then POST /api/show: capabilities
GET /openapi.json          llama-cpp-python (its title)   the kind only
/v1/models owned_by vllm   vLLM                           max_model_len
========================  =============================  =====================================

Anything else is "openai-compatible". Vision not settled here (no metadata, no configuration)
is settled by the client with one tiny image request (`LlmClient.probe`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from streamer.errors import LlmConfigError

if TYPE_CHECKING:
    from streamer.llm._http import Http

__all__ = ["SERVER_KINDS", "ModelInfo", "ServerInfo", "choose_model", "discover", "find_model"]

SERVER_KINDS = ("lmstudio", "llama.cpp", "llama-cpp-python", "ollama", "vllm", "openai-compatible")


@dataclass(frozen=True)
class ModelInfo:
    """One model the server lists. None means the server does not say."""

    id: str
    loaded: bool | None = None
    vision: bool | None = None
    context_length: int | None = None
    type: str | None = None
    parallel: int | None = None


@dataclass(frozen=True)
class ServerInfo:
    """What the probe found.

    Attributes:
        url: the base URL asked.
        kind: one of `SERVER_KINDS`.
        models: every model the server lists, with what it says about each.
        model: the model captions use (the configured one, else the loaded one), None if none.
        vision: whether `model` takes images; None while unknown.
        vision_source: where `vision` came from ("lmstudio /api/v1/models", "config",
            "image probe", "image error", ...).
        context_length: `model`'s context in tokens (the loaded context where known).
        loaded: whether `model` is loaded (None when the server does not say).
        parallel: requests the client sends at once (the server's slots; 1 when unknown).
        problem: why no model could be chosen (`model` is None), with the fix.
    """

    url: str
    kind: str
    models: tuple[ModelInfo, ...]
    model: str | None
    vision: bool | None = None
    vision_source: str = "unknown"
    context_length: int | None = None
    loaded: bool | None = None
    parallel: int = 1
    problem: str | None = None


async def discover(http: Http, model: str | None) -> ServerInfo:
    """Probe the server behind `http` (no chat request is sent).

    Args:
        http: the client's HTTP helper (base URL, key, session).
        model: the configured model name, or None to pick the loaded one.

    Raises:
        LlmUnavailableError: the server cannot be reached.
        LlmConfigError: wrong URL, bad API key, or an answer that is not a model list.
    """
    listed = _listed_models(await http.get_checked("/models"), http.base)
    kind, models, parallel, source = await _metadata(http, listed)
    chosen, problem = choose_model(kind, models, model)
    info = ServerInfo(http.base, kind, models, chosen, parallel=parallel, problem=problem)
    if chosen is None:
        return info
    if kind == "ollama":
        models = await _ollama_show(http, models, chosen)
        info = replace(info, models=models)
    found = find_model(models, chosen) or ModelInfo(chosen)
    return replace(
        info,
        vision=found.vision,
        vision_source=source if found.vision is not None else "unknown",
        context_length=found.context_length,
        loaded=found.loaded,
        parallel=found.parallel or parallel,
    )


def _listed_models(body: Any, base: str) -> list[dict[str, Any]]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) and "id" in m for m in data):
        raise LlmConfigError(
            f"GET {base}/models did not answer with an OpenAI model list: {str(body)[:120]!r} "
            "(fix: give the OpenAI-compatible base URL, ending in /v1)",
            kind="wrong_url",
            reason="wrong URL",
        )
    return data


async def _metadata(
    http: Http, listed: list[dict[str, Any]]
) -> tuple[str, tuple[ModelInfo, ...], int, str]:
    """(server kind, models, parallel requests, route) from the first route that answers.

    LM Studio's parallel default is 4 (its "Max Concurrent Predictions"); servers that do not
    say get 1.
    """
    plain = tuple(ModelInfo(str(m["id"])) for m in listed)
    v1 = await http.try_json(http.root + "/api/v1/models")
    if isinstance(v1, dict) and isinstance(v1.get("models"), list):
        models = tuple(_lmstudio_v1(m) for m in v1["models"] if isinstance(m, dict))
        return "lmstudio", models, 4, "lmstudio /api/v1/models"
    v0 = await http.try_json(http.root + "/api/v0/models")
    if isinstance(v0, dict) and isinstance(v0.get("data"), list):
        models = tuple(_lmstudio_v0(m) for m in v0["data"] if isinstance(m, dict))
        return "lmstudio", models, 4, "lmstudio /api/v0/models"
    greeting = await http.try_json(http.root + "/lmstudio-greeting")
    if isinstance(greeting, dict) and greeting.get("lmstudio") is True:
        return "lmstudio", plain, 4, "lmstudio"
    props = await http.try_json(http.root + "/props")
    if isinstance(props, dict) and _is_llama_cpp(props):
        models = tuple(_with_props(m, props) for m in plain)
        return "llama.cpp", models, _slots(props), "llama.cpp /props"
    version = await http.try_json(http.root + "/api/version")
    if isinstance(version, dict) and "version" in version:
        return "ollama", plain, 1, "ollama /api/show"
    if any(m.get("owned_by") == "vllm" for m in listed):
        return "vllm", tuple(_vllm(m) for m in listed), 1, "vllm /v1/models"
    openapi = await http.try_json(http.root + "/openapi.json")
    about = openapi.get("info") if isinstance(openapi, dict) else None
    title = str(about.get("title", "")) if isinstance(about, dict) else ""
    if "llama.cpp python" in title.lower():
        # It interrupts a running request when a new one arrives: strictly one at a time.
        return "llama-cpp-python", tuple(replace(m, loaded=True) for m in plain), 1, "openapi"
    return "openai-compatible", plain, 1, "none"


def _lmstudio_v1(entry: dict[str, Any]) -> ModelInfo:
    instances = [i for i in entry.get("loaded_instances") or [] if isinstance(i, dict)]
    config = (instances[0].get("config") or {}) if instances else {}
    capabilities = entry.get("capabilities")
    vision = capabilities.get("vision") if isinstance(capabilities, dict) else None
    return ModelInfo(
        id=str(instances[0].get("id") or entry.get("key")) if instances else str(entry.get("key")),
        loaded=bool(instances),
        vision=bool(vision) if vision is not None else (False if entry.get("type") else None),
        context_length=_int(config.get("context_length")) or _int(entry.get("max_context_length")),
        type=entry.get("type"),
        parallel=_int(config.get("parallel")),
    )


def _lmstudio_v0(entry: dict[str, Any]) -> ModelInfo:
    kind = entry.get("type")
    return ModelInfo(
        id=str(entry.get("id")),
        loaded=entry.get("state") == "loaded",
        vision=kind == "vlm" if kind else None,
        context_length=_int(entry.get("loaded_context_length"))
        or _int(entry.get("max_context_length")),
        type=kind,
    )


def _is_llama_cpp(props: dict[str, Any]) -> bool:
    return any(k in props for k in ("default_generation_settings", "total_slots", "modalities"))


def _with_props(model: ModelInfo, props: dict[str, Any]) -> ModelInfo:
    modalities = props.get("modalities")
    vision = modalities.get("vision") if isinstance(modalities, dict) else None
    settings = props.get("default_generation_settings")
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return replace(
        model,
        loaded=True,
        vision=bool(vision) if vision is not None else None,
        context_length=_int(n_ctx) or _int(props.get("n_ctx")),
    )


def _slots(props: dict[str, Any]) -> int:
    return max(1, _int(props.get("total_slots")) or 1)


def _vllm(entry: dict[str, Any]) -> ModelInfo:
    return ModelInfo(str(entry["id"]), loaded=True, context_length=_int(entry.get("max_model_len")))


async def _ollama_show(
    http: Http, models: tuple[ModelInfo, ...], chosen: str
) -> tuple[ModelInfo, ...]:
    show = await http.try_json(http.root + "/api/show", payload={"model": chosen})
    if not isinstance(show, dict):
        return models
    capabilities = show.get("capabilities")
    vision = "vision" in capabilities if isinstance(capabilities, list) else None
    info = show.get("model_info") if isinstance(show.get("model_info"), dict) else {}
    context = next((_int(v) for k, v in info.items() if k.endswith(".context_length")), None)
    found = ModelInfo(chosen, vision=vision, context_length=context)
    others = tuple(m for m in models if m.id != chosen)
    return (found, *others)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def choose_model(
    kind: str, models: tuple[ModelInfo, ...], wanted: str | None
) -> tuple[str | None, str | None]:
    """(model to use, problem when there is none).

    The configured name wins, even when unlisted (LM Studio accepts aliases it does not list).
    Otherwise a loaded chat model, vision first (captions are about frames). A server that does
    not report loading (one model per server) gets its first listed chat model; LM Studio with
    nothing loaded gets none: JIT-loading an arbitrary model could take minutes and gigabytes.
    """
    if wanted is not None:
        return wanted, None
    chat = [m for m in models if not _is_embedding(m)]
    if not chat:
        return None, "the server lists no chat model (fix: load a model, or name one)"
    loaded = [m for m in chat if m.loaded]
    if loaded:
        return sorted(loaded, key=lambda m: m.vision is not True)[0].id, None
    if kind == "lmstudio":
        return None, (
            "no model is loaded in LM Studio (fix: load one with `lms load MODEL` or in the "
            "app, or name the model to load)"
        )
    return chat[0].id, None


def find_model(models: tuple[ModelInfo, ...], name: str) -> ModelInfo | None:
    """The listed model `name` refers to: by id, else by LM Studio's aliases of one key
    ("qwen/qwen3-vl-4b", "qwen3-vl-4b" and "qwen/qwen3-vl-4b@q4_k_m" name the same model)."""
    exact = next((m for m in models if m.id == name), None)
    return exact or next((m for m in models if _base_name(m.id) == _base_name(name)), None)


def _base_name(name: str) -> str:
    return name.rsplit("/", 1)[-1].split("@", 1)[0].lower()


def _is_embedding(model: ModelInfo) -> bool:
    return (model.type or "").startswith("embedding") or "embed" in model.id.lower()
