"""The LM Studio double moved to `bench.harness.lmstudio` (the benchmarks run it too); this
name stays for the tests that still import it from here (the web viewer's)."""

from bench.harness.lmstudio import FakeModel, LmStudioDouble, default_models, describe_request

__all__ = ["FakeModel", "LmStudioDouble", "default_models", "describe_request"]
