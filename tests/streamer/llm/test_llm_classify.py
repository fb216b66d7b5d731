"""Error normalisation and classification, one row per real server message (the catalogue in
docs/llm-protocol.md §3 and §4)."""

from __future__ import annotations

import pytest

from streamer.errors import (
    LlmAuthError,
    LlmConfigError,
    LlmInputError,
    LlmNoVisionError,
    LlmTimeoutError,
    LlmUnavailableError,
)
from streamer.llm._http import Reply, check
from streamer.llm.classify import ErrorBody, classify, error_body

CASES = [
    # (name, status, body, error class, kind)
    ("lmstudio catch-all", 200,
     {"error": "Unexpected endpoint or method. (POST /chat/completions)"},
     LlmConfigError, "wrong_url"),
    ("lmstudio no images", 200,
     {"error": "Model does not support images. Please use a model that does."},
     LlmNoVisionError, "no_vision"),
    ("lmstudio vision add-on", 200,
     {"error": {"message": "Error in iterating prediction stream: ValueError: Vision add-on is "
                           "not loaded, but images were provided for processing"},
      "message": "…"}, LlmNoVisionError, "no_vision"),
    ("llama.cpp no mmproj", 500,
     {"error": {"code": 500, "message": "image input is not supported - hint: if this is "
                "unexpected, you may need to provide the mmproj", "type": "server_error"}},
     LlmNoVisionError, "no_vision"),
    ("llama-cpp-python image", 500,
     {"error": {"message": 'can only concatenate str (not "list") to str',
                "type": "internal_server_error", "param": None, "code": None}},
     LlmNoVisionError, "no_vision"),
    ("ollama no vision", 400,
     {"error": {"message": "model llama3 does not support vision", "type": "api_error"}},
     LlmNoVisionError, "no_vision"),
    ("llama-cpp-python context", 400,
     {"error": {"message": "This model's maximum context length is 2048 tokens.",
                "type": "invalid_request_error", "param": "messages",
                "code": "context_length_exceeded"}}, LlmInputError, "context_overflow"),
    ("llama.cpp context", 400,
     {"error": {"code": 400, "message": "request exceeds the available context size",
                "type": "exceed_context_size_error"}}, LlmInputError, "context_overflow"),
    ("lmstudio context 200", 200,
     {"error": {"message": "Input does not fit in context length. The input has 31430 tokens, "
                           "but the context length only supports 30000 tokens."},
      "message": "…"}, LlmInputError, "context_overflow"),
    ("lmstudio old context", 400,
     {"error": "Trying to keep the first 5000 tokens when context the overflows. However, the "
               "model is loaded with context length of only 4096 tokens"},
     LlmInputError, "context_overflow"),
    ("vllm old flat context", 400,
     {"object": "error", "message": "This model's maximum context length is 4096 tokens. "
      "However, you requested 5000 tokens", "type": "BadRequestError", "code": 400},
     LlmInputError, "context_overflow"),
    ("lmstudio webp", 400, {"error": "'url' field must be a base64 encoded image."},
     LlmInputError, "bad_image"),
    ("llama.cpp undecodable", 400,
     {"error": {"code": 400, "message": "failed to decode image bytes",
                "type": "invalid_request_error"}}, LlmInputError, "bad_image"),
    ("lmstudio no models", 400,
     {"error": "No models loaded. Please load a model in the developer page or use the "
               "'lms load' command."}, LlmConfigError, "no_models_loaded"),
    ("lmstudio 0.3.5 no models", 404, {"error": "No models loaded. …"},
     LlmConfigError, "no_models_loaded"),
    ("lmstudio unknown model", 400,
     {"error": {"message": 'Invalid model identifier "o4-mini". Please specify a valid '
                           "downloaded model (e.g., a, b, c).",
                "type": "invalid_request_error", "param": "model", "code": "model_not_found"}},
     LlmConfigError, "model_not_found"),
    ("lmstudio legacy unknown model", 404,
     {"error": {"message": 'Model "default" not found. Please specify a valid model.',
                "type": "invalid_request_error", "param": "model", "code": "model_not_found"}},
     LlmConfigError, "model_not_found"),
    ("ollama unknown model", 404,
     {"error": {"message": 'model "llava" not found, try pulling it first',
                "type": "not_found_error"}}, LlmConfigError, "model_not_found"),
    ("vllm unknown model", 404,
     {"error": {"message": "The model `x` does not exist.", "type": "NotFoundError",
                "code": 404}}, LlmConfigError, "model_not_found"),
    ("lmstudio auth", 401,
     {"error": {"type": "invalid_request", "code": "invalid_api_key",
                "message": "An LM Studio API token is required …"}}, LlmAuthError, "auth"),
    ("bare 403", 403, None, LlmAuthError, "auth"),
    ("llama.cpp loading", 503,
     {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}},
     LlmUnavailableError, "loading"),
    ("lmstudio model unloaded", 200, {"error": "Model unloaded."},
     LlmUnavailableError, "model_unloaded"),
    ("ollama queue full", 503, {"error": "server busy, please try again"},
     LlmUnavailableError, "server_error"),
    ("rate limited", 429, {"error": {"message": "slow down"}}, LlmUnavailableError, "busy"),
    ("lmstudio crash", 500,
     {"type": "error", "error": {"type": "api_error", "message": "The model has crashed "
                                 "without additional information. (Exit code: null)"}},
     LlmUnavailableError, "server_error"),
    ("200 unknown error", 200,
     {"error": {"message": "Error in iterating prediction stream: RuntimeError: boom"}},
     LlmUnavailableError, "server_error"),
    ("bad gateway, no body", 502, None, LlmUnavailableError, "server_error"),
    ("request timeout", 408, None, LlmTimeoutError, "timeout"),
    ("plain 404", 404, None, LlmConfigError, "wrong_url"),
    ("unknown 400", 400, {"error": {"message": "temperature must be ≤ 2"}},
     LlmInputError, "bad_request"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "cls", "kind"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_each_server_error_gets_its_class_and_kind(status, body, cls, kind):
    error = classify(status, error_body(body), where="POST http://x/v1/chat/completions")
    assert type(error) is cls
    assert error.kind == kind
    assert error.status == status
    assert error.retryable is issubclass(cls, LlmUnavailableError)
    assert "POST http://x/v1/chat/completions answered HTTP" in str(error)


def test_error_envelopes_are_normalised():
    assert error_body({"error": "plain"}) == ErrorBody("plain")
    assert error_body({"error": {"message": "m", "type": "t", "code": 500}}) == ErrorBody(
        "m", "t", "500"
    )
    assert error_body({"object": "error", "message": "flat", "type": "BadRequestError"}) == (
        ErrorBody("flat", "BadRequestError")
    )
    assert error_body({"error": {"type": "x"}}).message == "{'type': 'x'}"
    assert error_body({"choices": []}) is None
    assert error_body(["not", "a", "dict"]) is None
    assert error_body({"error": None}) is None


def test_messages_carry_the_fix_and_a_short_reason():
    error = classify(400, ErrorBody("No models loaded."), where="POST u")
    assert "lms load" in str(error)
    assert error.reason == "no model loaded"


def test_a_200_that_is_not_json_is_retryable_and_a_web_page_is_a_wrong_url():
    with pytest.raises(LlmUnavailableError) as garbage:
        check(Reply(200, None, '{"choices": [{"mess'), "POST u")
    assert garbage.value.kind == "bad_response"
    with pytest.raises(LlmConfigError) as page:
        check(Reply(200, None, "<!DOCTYPE html><html>router login</html>"), "POST u")
    assert page.value.kind == "wrong_url"
    check(Reply(200, {"choices": []}, "{}"), "POST u")  # no error: returns quietly
