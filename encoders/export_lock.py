"""One torch.export at a time in a process (`EXPORT_LOCK`).

`torch.export`, and the converters that decompose its programs (OpenVINO's, torch's ONNX
exporter), change torch's global operator tables while they work: two at once in one process
fail ("Trying to override a python impl for DispatchKey..."), and a `torch.compile` set up
meanwhile is silently ignored. Two can meet in one process: a run that failed early leaves its
model load (a daemon thread) exporting while the next run starts, or an application creates
two encoders on two threads. Every capture and conversion (`encoders.backends.capture`, the
backends' exporters) and `torch.compile`'s set-up (`encoders.acceleration`) hold this lock.
A module of its own, importing nothing of this package, so both can import it.
"""

from __future__ import annotations

import threading

__all__ = ["EXPORT_LOCK"]

EXPORT_LOCK = threading.RLock()
