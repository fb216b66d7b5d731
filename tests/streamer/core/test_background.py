"""Low-priority background threads: they really run below the video's threads."""

import os
import sys
import threading

import pytest

from streamer.core.background import BACKGROUND_NICE, LowPriorityPool, thread_nice


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
async def test_background_threads_run_at_a_lower_priority_than_the_caller():
    pool = LowPriorityPool("test-bg", workers=2)
    try:
        mine = thread_nice()
        theirs = await pool.run(thread_nice)
        name = await pool.run(lambda: threading.current_thread().name)
    finally:
        pool.shutdown()
    assert theirs == min(19, mine + BACKGROUND_NICE)
    assert name.startswith("test-bg")
    assert thread_nice() == mine  # the caller's own priority is untouched
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine


async def test_background_work_returns_its_result_and_raises_its_errors():
    pool = LowPriorityPool("test-bg")
    try:
        assert await pool.run(sum, [1, 2, 3]) == 6
        assert await pool.run(int, "7", base=8) == 7
        with pytest.raises(ValueError, match="invalid literal"):
            await pool.run(int, "x")
    finally:
        pool.shutdown()
    # A pool shut down starts again on the next use.
    assert await pool.run(len, "abc") == 3
    pool.shutdown()
