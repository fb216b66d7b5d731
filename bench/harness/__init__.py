"""Real components to run the pipeline against, outside the product: GStreamer's RTSP server
(`rtsp`, `rtsp_server`), an LM Studio double (`lmstudio`, `serve_lmstudio`) and a headless
Chromium driver (`browser`).

The benchmarks measure with them and the tests check behaviour with them; they live here, not
under `tests/`, so that a benchmark never depends on the test suite.
"""
