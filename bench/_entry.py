"""How a benchmark script ends: `run_script(main)` at its foot.

Ctrl-C stops a script with one line and exit status 130 (what a shell reports for SIGINT), not
a traceback. What it started is torn down on the way out: its `with` blocks and `finally`
clauses run as the interrupt unwinds, and its child processes, in the same process group, got
the same SIGINT from the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


def run_script(main: Callable[[], int | None]) -> NoReturn:
    """Call `main` and exit with what it returns (None: 0)."""
    try:
        code = main()
    except KeyboardInterrupt:
        print(f"{Path(sys.argv[0]).stem}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code)
