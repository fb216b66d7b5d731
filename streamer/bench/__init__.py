"""Benchmarks behind `streamer bench`: the encoder table and the pipeline against its floors.

Modules, each usable on its own and from `bench/*.py`:

    measure     timing and peak-memory helpers shared by every benchmark
    encoders    `streamer bench encoders`: latency, throughput, memory and size per encoder
    clips       a benchmark clip of at least N seconds (the input looped, streams copied), or
                a synthetic H.264 clip of any size (a moving pattern)
    file        file annotation: decode floor, floor+draw, a naive loop and the pipeline,
                each in its own process, paced like a camera for the live rows
    live        live streams (steady state and an outage) for `bench/live_streams.py`, and
                files played as live cameras for `bench/gpu_suite.py`
    pipeline    `streamer bench pipeline`: the file and live rows and their ratios, one run

Timings are never asserted in tests; the tests check that these run and what they print.
"""

__all__: list[str] = []
