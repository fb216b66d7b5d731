"""`streamer streams` against a real `streamer run --serve` process: list, add, set and rm a
stream of the real RTSP server, and the refusals (a bad value, a wrong token, no server)."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from live_helpers import free_port
from media import read_jsonl

pytestmark = pytest.mark.integration

TOKEN = "s3cret"
TINY = ["--model", "tiny", "--weights", "random", "--no-llm", "--no-progress"]


def streams(*args: str, token: str | None = TOKEN, server: str | None = None):
    """Run `streamer streams ARGS` as a user does; the token from STREAMER_TOKEN."""
    env = dict(os.environ)
    env.pop("STREAMER_TOKEN", None)
    if token is not None:
        env["STREAMER_TOKEN"] = token
    if server is not None:
        env["STREAMER_SERVER"] = server
    return subprocess.run([sys.executable, "-m", "streamer", "streams", *args], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _serving(url: str) -> bool:
    """Whether the viewer answers (a 401 too: it wants the token)."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@pytest.fixture
def running(tmp_path, rtsp_server):
    """`streamer run cam1=... --serve 127.0.0.1:PORT --serve-token TOKEN`, serving."""
    port, log = free_port(), tmp_path / "run.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("w") as err:  # a file: an unread pipe would fill and block the run
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", f"cam1={rtsp_server.url('cam1')}",
             "--jsonl", str(tmp_path / "{stream}.jsonl"), "--serve", f"127.0.0.1:{port}",
             "--serve-token", TOKEN, "--analyze-fps", "2", *TINY],
            stderr=err,
        )  # fmt: skip
        deadline = time.monotonic() + 120  # the model loads first, then the viewer binds
        try:
            while not _serving(url):
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the run never served"
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            proc.wait(60)
    assert proc.returncode == 143, log.read_text()[-3000:]  # SIGTERM's graceful end


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.3)


@pytest.mark.slow
def test_list_add_set_and_rm_a_stream_of_a_running_process(tmp_path, rtsp_server, running):
    listed = streams("list", "--server", running)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["name", "source", "live", "fps", "analysed", "rate", "state"]
    assert [row.split()[0] for row in rows] == ["cam1"]

    camera = rtsp_server.url("cam2", userinfo="admin:hunter2")  # the server asks none
    added = streams("add", f"door={camera}", "--rate", "4", "--label", "blorft, snizzle",
                    "--alert", "a person", "--alert-threshold", "-1", "--alert-frames", "1",
                    server=running)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added door: rate 4.0, labels blorft, snizzle, alerts a person")
    _wait_for(lambda: any(r["type"] == "alert" for r in read_jsonl(tmp_path / "door.jsonl")),
              60, "door's alert")  # fmt: skip

    table = streams("list", server=running).stdout
    door = next(line for line in table.splitlines() if line.startswith("door"))
    assert "hunter2" not in table
    _, source, live, fps, analysed, rate, state = door.split()
    assert (live, rate, state) == ("yes", "4.0", "online") and int(analysed) > 0, door
    assert source.startswith("rtsp://***@127.0.0.1:") and float(fps) >= 0
    data = json.loads(streams("list", "--json", server=running).stdout)
    (found,) = [s for s in data if s["name"] == "door"]
    assert found["labels"] == ["blorft", "snizzle"] and found["frames"]["analysed"] > 0
    assert "hunter2" not in json.dumps(data)

    def door_out_fps() -> float:
        listed = json.loads(streams("list", "--json", server=running).stdout)
        return next(s for s in listed if s["name"] == "door")["fps"]["out"]

    # a rate needs two of the server's periodic readings with frames between them: an alert
    # on the first analysed frame can come before the second reading of a stream just added
    _wait_for(lambda: door_out_fps() > 0, 30, "door's output rate above 0")

    changed = streams("set", "door", "--rate", "1", "--alerts", "--captions", "off",
                      server=running)  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.startswith("changed door: rate 1.0, labels blorft, snizzle, alerts "
                                     "none, captions off")  # fmt: skip

    removed = streams("rm", "door", server=running)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.startswith("removed door: ") and "outputs are finished" in removed.stdout
    rows = streams("list", server=running).stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["cam1"]


@pytest.mark.slow
def test_refusals_print_the_servers_message_on_one_line(tmp_path, running):
    cases = [  # (args, token, exit code, words)
        (["add", "x=ftp://cam/1"], TOKEN, 2, "ftp:// streams"),
        (["set", "cam1", "--labels", str(tmp_path / "no.txt")], TOKEN, 2, "does not exist"),
        (["rm", "nope"], TOKEN, 2, "no stream named 'nope' (the run's streams: cam1)"),
        (["add", "cam1=rtsp://127.0.0.1:9/x"], TOKEN, 2, "'cam1' runs already"),
        (["list"], "wrong", 2, "401: this viewer needs its token"),
        (["--token", "wrong", "list"], TOKEN, 2, "401: this viewer needs its token"),
        (["rm", "cam1"], None, 2, "give --token T, or set STREAMER_TOKEN"),
    ]
    for args, token, code, words in cases:
        done = streams(*args, "--server", running, token=token)
        assert done.returncode == code, (args, done.stderr)
        assert done.stderr.startswith("streamer streams: error: ") and words in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    rows = streams("list", server=running).stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["cam1"]  # nothing was changed


@pytest.mark.slow
def test_an_added_input_that_fails_is_an_error_and_one_not_reached_yet_says_why(
    rtsp_server, running
):
    failed = streams("add", f"gate={rtsp_server.url('nope')}", server=running)  # no such mount
    assert failed.returncode == 1, failed.stderr
    assert "gate: its input cannot be opened: " in failed.stderr
    assert "the server has no stream there" in failed.stderr
    assert "`streamer streams rm gate`" in failed.stderr
    assert ".;" not in failed.stderr and ")." in failed.stderr  # one sentence ends, the next starts
    refused = streams("add", f"yard=rtsp://127.0.0.1:{free_port()}/cam", server=running)
    assert refused.returncode == 0, refused.stderr
    assert "state offline (" in refused.stdout and "connection refused" in refused.stdout
    assert "it keeps retrying" in refused.stdout


def test_an_unreachable_server_exits_1_naming_it_and_the_fix():
    nobody = f"http://127.0.0.1:{free_port()}"
    done = streams("list", server=nobody)
    assert done.returncode == 1
    assert done.stderr.startswith(f"streamer streams: error: cannot reach {nobody} (")
    assert "--server URL (or STREAMER_SERVER)" in done.stderr and done.stderr.count("\n") == 1


def test_the_server_may_be_given_before_the_action_or_after_it():
    # `streamer streams --server URL list` was refused by argparse (the option was the
    # actions'); after the action, it wins over one before it; either wins over the variable.
    nobody, elsewhere = f"http://127.0.0.1:{free_port()}", "http://127.0.0.1:9"
    after = ["--server", elsewhere, "--token", "t", "rm", "cam1", "--server", nobody]
    for args in (["--server", nobody, "list"], ["list", "--server", nobody], after):
        done = streams(*args, server=elsewhere)
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr.startswith(f"streamer streams: error: cannot reach {nobody} (")
    listed = streams("--server", nobody, "list", "--help")
    assert listed.returncode == 0 and "--server URL" in listed.stdout


async def test_a_failing_server_or_one_that_is_no_viewer_is_unavailable_not_a_refusal():
    """Faults a real run does not make on purpose, from an in-process server: a 500, and a
    page that is not the API's (another service on that port)."""
    from aiohttp import ClientSession, web

    from streamer.cli.streams import StreamsClient
    from streamer.errors import ApiRefusedError, ApiUnavailableError

    async def broken(request):
        return web.json_response({"error": "disk full"}, status=500)

    async def other(request):
        return web.Response(text="<html>a router's login page</html>", content_type="text/html")

    async def refused(request):
        return web.Response(text="401: this viewer needs its token", status=401)

    app = web.Application()
    app.router.add_get("/a/api/streams", broken)
    app.router.add_get("/b/api/streams", other)
    app.router.add_get("/c/api/streams", refused)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with ClientSession() as session:
            with pytest.raises(ApiUnavailableError, match=r"/a/api/streams: 500: disk full"):
                await StreamsClient(session, base + "/a", "t").list()
            with pytest.raises(ApiUnavailableError, match=r"200: <html>.*streamer run's viewer"):
                await StreamsClient(session, base + "/b", "t").list()
            with pytest.raises(ApiRefusedError) as caught:
                await StreamsClient(session, base + "/c", None).list()
    finally:
        await runner.cleanup()
    assert caught.value.status == 401 and caught.value.exit_code == 2
    assert str(caught.value).endswith("(give --token T, or set STREAMER_TOKEN)")
