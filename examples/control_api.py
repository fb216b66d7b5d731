"""Change a running run's streams over HTTP: add a camera, change it, list, remove it.

    python examples/control_api.py FIRST=rtsp://... SECOND=rtsp://... [--port 8080]
        [--token s3cret] [--alert "a person at the door"] [--threshold 0.27] [--out control]

Starts `streamer run FIRST --serve 127.0.0.1:PORT --serve-token TOKEN` (the API needs the
token for every change, also from this machine), then drives its stream API as any script
or home-automation hub would: POST /api/streams adds SECOND with an alert, PATCH changes its
rate and replaces its alerts, GET /api/streams lists, DELETE removes it (its files are
finished and its summary answered). FIRST never pauses. The same from a shell:
`streamer streams add|set|list|rm --server http://127.0.0.1:PORT` with STREAMER_TOKEN set.
"""

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp

parser = argparse.ArgumentParser()
parser.add_argument("first", metavar="FIRST=URL", help="the camera the run starts with")
parser.add_argument("second", metavar="SECOND=URL", help="the camera added while it runs")
parser.add_argument("--port", type=int, default=8080)
parser.add_argument("--token", default="s3cret")
parser.add_argument("--alert", default="a person at the door", help="a text query")
parser.add_argument("--threshold", type=float, default=0.27, help="CLIP cosine to match")
parser.add_argument("--step", type=float, default=5.0, help="seconds between the changes")
parser.add_argument("--out", default="control", help="each stream's JSON Lines go here")
parser.add_argument("--model", default="ViT-B/32")
parser.add_argument("--weights", default="auto", help="auto, random, or a local file")
args = parser.parse_args()

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
api = f"http://127.0.0.1:{args.port}/api"
second = args.second.split("=", 1)[0]
run = [sys.executable, "-m", "streamer", "run", args.first, "--jsonl", str(out / "{stream}.jsonl"),
       "--serve", f"127.0.0.1:{args.port}", "--serve-token", args.token, "--no-llm",
       "--no-progress", "--model", args.model, "--weights", args.weights]  # fmt: skip


async def call(session: aiohttp.ClientSession, method: str, path: str, body=None) -> dict:
    async with session.request(method, api + path, json=body) as response:
        answer = await response.json()
        if response.status >= 400:
            sys.exit(f"{method} {path}: {response.status}: {answer['error']}")
        return answer


async def show(session: aiohttp.ClientSession) -> None:
    for s in (await call(session, "GET", "/streams"))["streams"]:
        alerts = ", ".join(a["query"] for a in s["alerts"]) or "none"
        print(f"  {s['name']}: {s['state']}, {s['frames']['analysed']} analysed at "
              f"{s['analyze_fps']}/s, alerts: {alerts}", flush=True)  # fmt: skip


async def drive(session: aiohttp.ClientSession) -> None:
    await show(session)
    alert = {"query": args.alert, "alert-threshold": args.threshold, "alert-frames": 1}
    body = {"name": second, "input": args.second.split("=", 1)[1], "analyze-fps": 1,
            "alerts": [alert]}  # fmt: skip
    await call(session, "POST", "/streams", body)
    print(f"added {second} at 1 frame/s, alerting on {args.alert!r}", flush=True)
    await asyncio.sleep(args.step)
    await show(session)
    change = {"analyze-fps": 4, "alerts": [{**alert, "query": "a delivery van"}]}
    await call(session, "PATCH", f"/streams/{second}", change)
    print(f"changed {second}: 4 frames/s, alerting on 'a delivery van' instead", flush=True)
    await asyncio.sleep(args.step)
    await show(session)
    summary = await call(session, "DELETE", f"/streams/{second}")
    print(f"removed {second}: {summary['frames']} frames, {summary['analysed']} analysed")


async def main() -> None:
    process = await asyncio.create_subprocess_exec(*run)
    headers = {"Authorization": f"Bearer {args.token}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            for _ in range(600):  # the model loads, then the viewer listens
                if process.returncode is not None:
                    sys.exit("the run ended before it served: see its message above")
                try:
                    await call(session, "GET", "/streams")
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.2)
            print(f"running at http://127.0.0.1:{args.port}/:", flush=True)
            try:
                await drive(session)
            except aiohttp.ClientConnectionError:  # the run is gone: a file input ended
                sys.exit("the run ended while it was being driven: a file input ends at its "
                         "last frame, and this example drives cameras (rtsp://...)")  # fmt: skip
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # as Ctrl-C: the run finishes its files
            await process.wait()
    lines = (out / f"{second}.jsonl").read_text(encoding="utf-8").splitlines()
    fired = [r["query"] for r in map(json.loads, lines) if r["type"] == "alert"]
    print(f"{second}'s alerts: {len(fired)} ({', '.join(sorted(set(fired))) or 'none'})")


asyncio.run(main())
