"""Run the LM Studio double as its own process (for benchmarks: its work then does not share
the measured pipeline's event loop).

    python bench/harness/serve_lmstudio.py --delay 2.0
prints "READY <url>", serves until its standard input closes, then prints its request counts as
one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: run as a script

from bench.harness.lmstudio import LmStudioDouble

SENTENCES = (
    "Coloured bars fill the screen above a moving noise pattern.",
    "A test card with a grey ramp and a small white box.",
    "Broadcast colour bars with a ticking counter in one corner.",
)


async def main(delay: float) -> None:
    double = LmStudioDouble(delay_s=delay, answer=lambda body, n: SENTENCES[n % len(SENTENCES)])
    await double.start()
    print(f"READY {double.url}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await double.stop()
    print(json.dumps({"counts": dict(double.counts), "max_in_flight": double.max_in_flight}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per answer")
    asyncio.run(main(parser.parse_args().delay))
