"""The console script's exit while an abandoned model load is still inside native code."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A run stopped mid-export leaves the load's thread inside torch/OpenVINO. Python 3.11 ends
# such a daemon thread at exit in a way C++ turns into an abort ("terminate called without an
# active exception", SIGABRT). Here the thread is a torch matmul loop: the same native frames.
SCRIPT = textwrap.dedent(
    """
    import asyncio

    import torch

    import streamer.cli.main as cli
    from streamer.core.background import start_in_thread

    a = torch.randn(1500, 1500)

    def exporting():
        for _ in range(100_000):
            a @ a

    async def run():
        start_in_thread(exporting, name="encoder-load")
        await asyncio.sleep(0.3)

    def main(argv=None):  # a run that was aborted while its model exported
        asyncio.run(run())
        print("aborted", flush=True)
        return 130

    cli.main = main
    cli.console()
    """
)


def test_the_run_exit_code_comes_back_not_an_abort() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert "terminate called" not in done.stderr
    assert done.returncode == 130, done.stderr
    assert done.stdout == "aborted\n"  # what was printed before the exit was flushed


def test_without_such_a_thread_the_exit_is_the_usual_one() -> None:
    script = "import streamer.cli.main as cli\ncli.main = lambda argv=None: 3\ncli.console()"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 3 and done.stderr == ""


def test_ctrl_c_before_the_command_begins_is_exit_130_without_a_traceback():
    """Ctrl-C while the parser is built (its imports: the first few tenths of a second)."""
    script = textwrap.dedent(
        """
        import streamer.cli.main as cli

        def interrupted():
            raise KeyboardInterrupt

        cli.build_parser = interrupted
        cli.console()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 130
    assert done.stderr == "streamer: interrupted\n"


def test_output_piped_into_a_reader_that_stopped_ends_quietly():
    """`streamer ... | head -1`: the reader closes the pipe early; the command ends with 141
    (as a program killed by SIGPIPE does) and no BrokenPipeError traceback."""
    import os

    read, write = os.pipe()
    os.close(read)  # a reader that has stopped (head after its line)
    try:
        command = [sys.executable, "-m", "streamer", "encoders", "list"]
        done = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "Broken pipe" not in done.stderr, done.stderr


LATE_LINE = textwrap.dedent(
    """
    import asyncio
    import logging
    import time

    import streamer.cli.main as cli
    from streamer.core.background import start_in_thread

    def loaded():  # the model's load, abandoned by the refused run, ends a moment later
        time.sleep(0.2)
        logging.getLogger("streamer").info("clip 'tiny' runs on OpenVINO")

    async def refused():  # the run starts its model's load, then a check refuses it
        start_in_thread(loaded, name="encoder-load")

    def main(argv=None):
        logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
        asyncio.run(refused())
        print("streamer: error: input 'missing.mp4' does not exist", flush=True)
        return 2

    cli.main = main
    cli.console()
    """
)


def test_an_error_is_the_last_word_of_a_refused_run() -> None:
    # The model loads beside the checks: its "runs on OpenVINO" line came after the error.
    done = subprocess.run([sys.executable, "-c", LATE_LINE], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "runs on OpenVINO" not in done.stderr, done.stderr
