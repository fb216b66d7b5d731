"""The search page's reads run on threads of their own: searches that take long (a flood of
them, a slow disk) leave the event loop's default thread pool to the run's stages."""

import asyncio
import threading

from aiohttp.test_utils import TestClient, TestServer

from streamer.core.background import thread_nice
from streamer.watch.web._http import guarded_app
from streamer.watch.web.archive_routes import ArchiveRoutes
from streamer.watch.web.options import ServeConfig


class _SlowReader:
    """A reader whose searches wait until released, noting the priority they ran at."""

    encoder_ready = True

    def __init__(self) -> None:
        self.release = threading.Event()
        self.nice: list[int | None] = []

    def search(self, q, k, **filters):
        self.nice.append(thread_nice())
        self.release.wait(10)
        return []


async def test_a_flood_of_slow_searches_leaves_the_default_pool_free():
    reader = _SlowReader()
    app = guarded_app(ServeConfig(port=0))
    ArchiveRoutes(reader, token_required=False, live=True).add_to(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        searches = [asyncio.create_task(client.get("/api/search", params={"q": f"x{i}"}))
                    for i in range(12)]  # fmt: skip
        await asyncio.sleep(0.3)
        # A stage's `to_thread` (the run's tags, a stream added) still runs at once.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 2.0) == "free"
        reader.release.set()
        answers = await asyncio.gather(*searches)
        assert [r.status for r in answers] == [200] * 12
        base = thread_nice()
        assert base is None or all(n is not None and n > base for n in reader.nice)
    finally:
        reader.release.set()
        await client.close()
