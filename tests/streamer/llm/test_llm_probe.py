"""Server discovery against the double: LM Studio's REST v1 and v0 metadata, llama.cpp's /props,
a bare OpenAI-compatible server (the 16x16 image probe), auth, nothing loaded, a wrong URL."""

from __future__ import annotations

import pytest

from bench.harness.lmstudio import FakeModel, LmStudioDouble
from streamer.llm import LlmAuthError, LlmConfigError, LlmState, LlmUnavailableError
from streamer.llm.breaker import BreakerState

CHAT = "POST /v1/chat/completions"


async def test_lm_studio_v1_metadata_gives_models_loaded_state_vision_context_and_slots(
    double, make_client
):
    double.models["qwen2-vl-2b-instruct"].parallel = 2
    client, changes = make_client(double.url)
    info = await client.probe()
    assert info.kind == "lmstudio"
    by_id = {m.id: m for m in info.models}
    assert by_id["qwen2-vl-2b-instruct"].loaded and by_id["qwen2-vl-2b-instruct"].vision
    assert by_id["llama-3.2-1b-instruct"].loaded is False
    assert by_id["llama-3.2-1b-instruct"].vision is False
    assert info.model == "qwen2-vl-2b-instruct"
    assert (info.vision, info.vision_source) == (True, "lmstudio /api/v1/models")
    assert (info.context_length, info.loaded, info.parallel) == (4096, True, 2)
    assert double.counts[CHAT] == 0  # metadata was enough: no image probe
    assert double.counts["GET /api/v0/models"] == 0
    assert changes == []  # it stays OK


async def test_lm_studio_0_3_falls_back_to_rest_v0(make_client):
    async with LmStudioDouble(flavor="lmstudio-0.3") as server:
        server.models["qwen2-vl-2b-instruct"].loaded = False
        server.models["llama-3.2-1b-instruct"].loaded = True
        client, changes = make_client(server.url)
        info = await client.probe()
        assert server.counts["GET /api/v1/models"] == 1  # answered by the 200 catch-all
        assert info.kind == "lmstudio"
        assert info.model == "llama-3.2-1b-instruct"  # the loaded one, though text-only
        assert (info.vision, info.context_length, info.loaded) == (False, 4096, True)
        assert info.vision_source == "lmstudio /api/v0/models"
        assert client.state is LlmState.NO_VISION
        assert changes == [(LlmState.NO_VISION, "LLM text-only")]


async def test_a_loaded_vision_model_is_preferred_over_a_loaded_text_model(double, make_client):
    double.models["llama-3.2-1b-instruct"].loaded = True
    double.models = dict(reversed(double.models.items()))  # text model listed first
    client, _ = make_client(double.url)
    assert (await client.probe()).model == "qwen2-vl-2b-instruct"


async def test_llama_cpp_props_give_vision_context_and_slots(make_client):
    models = [FakeModel("gemma-3-4b", vision=True, context_length=8192)]
    async with LmStudioDouble(models=models, flavor="llama.cpp", parallel=3) as server:
        client, _ = make_client(server.url)
        info = await client.probe()
        assert info.kind == "llama.cpp"
        assert (info.model, info.vision, info.vision_source) == (
            "gemma-3-4b",
            True,
            "llama.cpp /props",
        )
        assert (info.context_length, info.parallel, info.loaded) == (8192, 3, True)
        assert server.counts["GET /props"] == 1


async def test_ollama_show_gives_vision_and_context(make_client):
    models = [FakeModel("gemma3:4b", vision=True, context_length=131072)]
    async with LmStudioDouble(models=models, flavor="ollama") as server:
        client, _ = make_client(server.url)
        info = await client.probe()
        assert (info.kind, info.model, info.vision) == ("ollama", "gemma3:4b", True)
        assert (info.vision_source, info.context_length) == ("ollama /api/show", 131072)
        assert server.counts["POST /api/show"] == 1 and server.counts[CHAT] == 0


async def test_vllm_is_told_by_its_model_list(make_client):
    async with LmStudioDouble(models=[FakeModel("Qwen/Qwen2-VL-7B", vision=True)],
                              flavor="vllm") as server:  # fmt: skip
        client, _ = make_client(server.url)
        info = await client.probe()
        assert (info.kind, info.context_length) == ("vllm", 4096)
        assert (info.vision, info.vision_source) == (True, "image probe")  # no metadata on it


async def test_without_metadata_one_16px_image_settles_vision_once_per_model(make_client):
    async with LmStudioDouble(models=[FakeModel("mystery")], flavor="openai") as server:
        client, changes = make_client(server.url)
        info = await client.probe()
        assert info.kind == "openai-compatible"
        assert (info.vision, info.vision_source) == (False, "image probe")
        assert server.counts[CHAT] == 1
        image_url = server.chat_bodies[0]["messages"][1]["content"][1]["image_url"]["url"]
        assert image_url.startswith("data:image/jpeg;base64,")
        await client.probe()
        assert server.counts[CHAT] == 1  # cached per model
        assert changes == [(LlmState.NO_VISION, "LLM text-only")]


async def test_a_configured_vision_flag_overrides_detection(make_client):
    async with LmStudioDouble(models=[FakeModel("mystery")], flavor="openai") as server:
        client, _ = make_client(server.url, vision=False)
        info = await client.probe()
        assert (info.vision, info.vision_source) == (False, "config")
        assert server.counts[CHAT] == 0


async def test_auth_is_checked_by_the_model_list(double, make_client):
    double.require_auth = "sk-lm-secret"
    client, changes = make_client(double.url)
    with pytest.raises(LlmAuthError, match="API token"):
        await client.probe()
    assert changes == [(LlmState.ERROR, "LLM error: API key refused")]
    keyed, _ = make_client(double.url, api_key="sk-lm-secret")
    assert (await keyed.probe()).model == "qwen2-vl-2b-instruct"


async def test_nothing_loaded_in_lm_studio_chooses_no_model_and_says_how_to_load(
    double, make_client
):
    double.no_models_loaded = True
    client, changes = make_client(double.url)
    info = await client.probe()
    assert info.model is None and "lms load" in info.problem
    assert changes == [(LlmState.ERROR, "LLM error: no model loaded")]
    assert double.counts[CHAT] == 0  # JIT-loading a model nobody chose could take minutes


async def test_an_unlisted_configured_model_is_kept_for_aliases(double, make_client):
    client, _ = make_client(double.url, model="qwen/qwen2-vl-2b-instruct@q4_k_m")
    info = await client.probe()
    assert info.model == "qwen/qwen2-vl-2b-instruct@q4_k_m"
    assert (info.vision, info.loaded) == (True, True)  # the metadata of the key it aliases
    assert double.counts[CHAT] == 0


async def test_a_url_without_v1_is_a_wrong_url_through_lm_studios_200_catch_all(
    double, make_client
):
    client, _ = make_client(double.root)
    with pytest.raises(LlmConfigError) as caught:
        await client.probe()
    assert caught.value.kind == "wrong_url" and caught.value.status == 200
    assert "/v1" in str(caught.value)


async def test_an_unreachable_server_is_down_and_counts_towards_the_breaker(make_client):
    server = LmStudioDouble()
    await server.start()
    await server.stop()  # a port nobody listens on
    client, changes = make_client(server.url, breaker_failures=1)
    with pytest.raises(LlmUnavailableError, match="lms server start") as caught:
        await client.probe()
    assert caught.value.kind == "unreachable"
    assert client.breaker_state is BreakerState.OPEN
    assert [state for state, _ in changes] == [LlmState.DOWN]
