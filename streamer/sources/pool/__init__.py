"""Decode worker processes: files and network streams decoded outside the pipeline's process.

Decode itself runs in C without Python's lock, but every frame also costs Python work in the
decode thread (PyAV's wrappers, the frame record, the hand-off to the event loop). With many
streams in one process that work queues on the one lock and decode becomes the limit; worker
processes each take a share of the streams. The encoder stays in the pipeline's process: one
GPU worker for every stream.

::

    pipeline process (parent.py, lane.py)              worker process (worker.py), one each
      SourceRunner.run(source, out, stop)                 the same FileSource / NetworkSource,
        Open(stream, spec, plan, slots) ──────────────►   decoding in its own thread
        receiver thread: copy the pixels out of the   ◄── FrameReady(stream, slot, meta):
          shared-memory slot, frame → the loop              pixels in a slot of the stream
        out.put(frame) (waits under BLOCK), then
        Free(stream, slot) ───────────────────────────►   the slot can be written again
        source.follow(...)                            ◄── Status / End(stream, report)
        tap.follow(state)                             ◄── Recorded(stream, state): a stream's
                                                          packet tap records in the worker

The messages are typed records (`wire.py`); each side dispatches on their class and refuses
any other.

Each stream has a ring of slots in one shared-memory segment sized for its frame (both
pictures of a `DecodePlan`: full size and analysis size). The pipeline's process creates every
segment (the worker asks for one, and again when a live stream comes back larger) and unlinks
it when the stream ends or the worker dies, so none is left behind. Pixels are copied out on
arrival (a memcpy, without the lock), so a slot is never read while the worker rewrites it and
no frame of the pipeline points into memory that goes away.

The slots are also the flow control. A file stream's slot is freed only once its frame is in
the pipeline's channel, so a slow pipeline holds the worker back and every frame arrives, in
order (the file contract). A live stream's frame is handed on without waiting (the channel
drops the oldest), and frames the worker drops while no slot is free are added to the
channel's drop count.

A worker ignores Ctrl-C (the pipeline stops it), leaves when the pipeline's process goes away
(its socket closes), and its logging goes to the pipeline's loggers. A worker that dies fails
its streams with the reason (a file is reported incomplete, a live source failed); nothing
waits for it.

Workers start without importing the encoders or torch: only `streamer.sources`, PyAV, OpenCV
and numpy, in a fraction of a second.
"""

from streamer.sources.pool.parent import (
    SHM_FOLDER,
    DecodePool,
    SourceRunner,
    decoding,
    worker_count,
)

__all__ = ["SHM_FOLDER", "DecodePool", "SourceRunner", "decoding", "worker_count"]
