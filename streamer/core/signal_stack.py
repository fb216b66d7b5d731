"""A valid alternate signal stack for the calling thread.

Python installs its signal handlers with `SA_ONSTACK`: a signal runs its handler on the thread's
alternate signal stack when the thread has one. OpenVINO's CPU plugin sets a stack of its own on
the thread that compiles a model and puts back the one it found when the model is destroyed. Two
models destroyed in the order they were made (not the reverse) leave the thread pointing at a
stack that was already freed, and the next signal it takes (Ctrl-C, SIGTERM, a SIGHUP reload)
kills the process with SIGSEGV instead of running the handler (seen with openvino 2026.x; the
tests reproduce it). `ensure_signal_stack()` gives the thread a stack of streamer's own that is
never freed; the signal-handling entry point calls it before installing its handlers.
"""

from __future__ import annotations

import ctypes
import sys
import threading

__all__ = ["ensure_signal_stack"]

_SIZE = 1 << 16  # 64 KiB: several signal frames with AVX-512 state, and Python's handler
_stacks: dict[int, ctypes.Array] = {}  # per thread, kept for the life of the process
_lock = threading.Lock()


class _StackT(ctypes.Structure):
    """`stack_t` of <signal.h> (Linux)."""

    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


def ensure_signal_stack() -> bool:
    """Give the calling thread an alternate signal stack of streamer's own.

    Returns:
        True when the stack was set; False where there is nothing to do (not Linux) or the C
        library refused (the thread keeps the stack it had).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    with _lock:
        buffer = _stacks.setdefault(threading.get_ident(), ctypes.create_string_buffer(_SIZE))
    stack = _StackT(ctypes.cast(buffer, ctypes.c_void_p), 0, _SIZE)
    return libc.sigaltstack(ctypes.byref(stack), None) == 0
