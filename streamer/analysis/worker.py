"""Which encoder to load, and the encoder worker: one thread owns the model and the device.

Every call to the encoder runs on the same single thread, so the device is never driven from two
threads at once, and the event loop only awaits results. The pipeline reaches the worker only
through the encoder service (`streamer.analysis.service`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import encoders
from encoders import EncoderError, WeightsUnavailableError
from encoders.backends import BACKEND_CHOICES, choose_backend, unsupported_reason
from encoders.info import PRECISION_NAMES
from encoders.registry import kinds
from streamer.core import startup
from streamer.core.background import lower_priority, not_waited_for_at_exit
from streamer.core.checks import one_of, one_of_registered, torch_device
from streamer.core.options import Option, option, validate
from streamer.errors import ConfigError, from_encoder_error

if TYPE_CHECKING:
    from encoders import Encoder
    from encoders.acceleration import Acceleration

log = logging.getLogger("streamer.encoder")


@dataclass(frozen=True, slots=True)
class EncoderChoice:
    """Which encoder to load.

    Attributes:
        kind: "clip", "dinov2" or "default".
        model: model name within the kind (None: the kind's default).
        weights: "pretrained", "random", "auto" (pretrained when available, else random, said
            loudly), or a local checkpoint path.
        device: "cpu", "cuda", "cuda:1"… (None: CUDA when present).
        precision: "auto", "fp32", "fp16" or "bf16".
        cuda_graphs: None: on when the encoder runs on CUDA; True: wanted (a warning says it
            does nothing on a CPU); False: off (`encoders.acceleration.Acceleration`).
        compile: run the forward through torch.compile (off by default: compiling costs tens
            of seconds and was not measured to pay on top of CUDA graphs).
        backend: what runs the image encoder: "auto" (the default: OpenVINO on a CPU when
            installed, else ONNX Runtime when installed, else torch; torch on CUDA, and in
            fp32 without an `export_cache` it can write; `encoders.backends`), "torch",
            "openvino" (CPU) or "onnxruntime" (CPU).
        int8: quantise the image encoder to int8 (OpenVINO or ONNX Runtime, NNCF's
            post-training quantisation), calibrated on `calibrate`; kept beside the fp32 export.
        calibrate: the video whose frames calibrate `int8`. None: the sample clip (the
            command line makes it the run's first file input, when it has one).
        export_cache: folder for the backend's exported model (converted once, then loaded);
            None converts it at every load, and makes "auto" torch (a log line says so). The
            command line sets it to `streamer.core.samples.export_cache_dir()`.

    A path (`weights`, `calibrate`, `export_cache`) may be a str or an `os.PathLike` (a
    `pathlib.Path`); it is kept as its str.
    """

    kind: str = option(
        "clip",
        Option(
            "--encoder",
            "the image encoder: clip | dinov2 | default, or another family registered in "
            "encoders.registry",
            one_of_registered(kinds),
        ),
    )
    model: str | None = option(
        None,
        Option("--model", "model of the encoder, e.g. ViT-B/32, ViT-B-32:laion2b_s34b_b79k, "
               "small", default_text="the encoder's default"),
    )  # fmt: skip
    weights: str = option(
        "pretrained",
        Option("--weights", "pretrained | random | auto (pretrained if available, else random, "
               "labelled) | PATH"),
        path=True,
    )  # fmt: skip
    device: str | None = option(
        None,
        Option("--device", "cpu | cuda | cuda:N", torch_device(),
               default_text="cuda when available"),
    )  # fmt: skip
    precision: str = option(
        "auto",
        Option("--precision", "auto (fp16 on CUDA, fp32 on a CPU) | fp32 | fp16 | bf16 (on a "
               "CPU with AVX-512 BF16 or AMX, OpenVINO computes in bf16: about twice fp32's speed)",
               one_of("auto", *PRECISION_NAMES)),
    )  # fmt: skip
    cuda_graphs: bool | None = option(
        None,
        Option("--cuda-graphs", "replay the encoder as CUDA graphs recorded for batch sizes "
               "1/4/16/64/256", kind="toggle", default_text="on with CUDA; does nothing on a CPU"),
    )  # fmt: skip
    compile: bool = option(
        False,
        Option("--compile", "torch.compile the encoder (compiling takes tens of seconds)",
               kind="toggle"),
    )  # fmt: skip
    backend: str = option(
        "auto",
        Option("--backend", "what runs the image encoder: auto (openvino on a CPU when "
               "installed, else onnxruntime when installed, else torch; torch on CUDA and with "
               "--no-cache) | torch | openvino (CPU: pip install openvino) | onnxruntime "
               "(CPU: pip install onnxruntime onnx onnxscript)", one_of(*BACKEND_CHOICES)),
    )  # fmt: skip
    int8: bool = option(
        False,
        Option("--int8", "quantise the image encoder to int8 (openvino or onnxruntime backend; "
               "NNCF: pip install nncf), calibrated on --calibrate, once: kept in "
               "the cache beside the fp32 export", kind="toggle"),
    )  # fmt: skip
    calibrate: str | None = option(
        None,
        Option("--calibrate", "video whose frames calibrate --int8", metavar="PATH",
               default_text="a run's first file input, else (and for encoders export) the "
               "sample clip"),
        path=True,
    )  # fmt: skip
    export_cache: str | None = option(None, path=True)

    def __post_init__(self) -> None:
        validate(self)
        reason = unsupported_reason(self.backend, self.kind, **self._asked())
        if reason is not None:
            flags = f"--backend {self.backend}" + (" --int8" if self.int8 else "")
            raise ConfigError(f"{flags}: {reason}")

    def _asked(self) -> dict[str, object]:
        return {"device": self.device, "precision": self.precision, "compile": self.compile,
                "int8": self.int8}  # fmt: skip

    @property
    def runs_on(self) -> str:
        """The backend that will run the encoder: `backend`, with "auto" decided."""
        from encoders.backends.export_cache import keeps_exports

        cached = keeps_exports(self.export_cache)
        return choose_backend(self.backend, self.kind, **self._asked(), cached=cached).name

    @property
    def acceleration(self) -> Acceleration:
        """The speed-ups this choice asks for."""
        from encoders.acceleration import Acceleration  # torch: only where a model runs

        return Acceleration(cuda_graphs=self.cuda_graphs, compile=self.compile)


def load_encoder(choice: EncoderChoice, *, export_in_background: bool = False) -> Encoder:
    """Create the encoder `choice` names, with the speed-ups it asks for.

    `export_in_background=True` (a run's load): where the backend's export is still to be made,
    the frames start on torch and move onto the export when a child process has made it
    (`encoders.backends.background`); `streamer encoders export` makes it here and now.

    With `weights="auto"`, a missing pretrained checkpoint is reported as a warning and the
    encoder is created with random weights instead (the overlay says so); every other failure
    propagates as the `StreamerError` twin of the `encoders` error (`streamer.errors`), which
    is still an instance of the `encoders` class.

    Raises:
        UnknownModelError: an unknown kind or model (also `encoders.UnknownEncoderError`).
        WeightsMissingError: the weights cannot be had (also `WeightsUnavailableError`).
        ModelError: any other failure of the encoder to load.
    """
    weights = "pretrained" if choice.weights == "auto" else choice.weights
    with startup.phase("model create"):
        encoder = _load(choice, weights, export_in_background)
    if encoder.info.backend == "torch":
        _say_torch(choice, encoder)
    return encoder


def _say_torch(choice: EncoderChoice, encoder: Encoder) -> None:
    """Log that torch runs the encoder, as the other backends log theirs; where "auto" chose
    torch only for want of an export cache (`--no-cache`, or the API's `export_cache=None`),
    the same line says what runs the faster backend."""
    import torch  # loaded already: torch runs the encoder

    info = encoder.info
    why = ""
    if choice.backend == "auto" and choice.export_cache is None:
        cached = choose_backend("auto", choice.kind, **choice._asked(), cached=True).name
        if cached != "torch":
            why = (
                f": backend 'auto' runs {cached} here only with an export cache to keep its "
                "export in, and this run has none (--no-cache, or EncoderChoice without "
                "export_cache); drop --no-cache, or from Python pass "
                "export_cache=str(streamer.core.samples.export_cache_dir()) (the command "
                "line's folder)"
            )
    log.info("%s %r runs on torch %s (%s, %s)%s", info.kind, info.model, torch.__version__,
             info.device, info.dtype, why)  # fmt: skip


def _load(choice: EncoderChoice, weights: str, in_background: bool) -> Encoder:
    try:
        try:
            encoder = _create(choice, weights, in_background)
        except WeightsUnavailableError as exc:
            if choice.weights != "auto":
                raise
            log.warning(
                "%s\n→ --weights auto: continuing with RANDOM weights; tags are meaningless.", exc
            )
            encoder = _create(choice, "random", in_background)
    except EncoderError as exc:
        raise from_encoder_error(exc) from exc
    if encoder.info.backend == "torch" or choice.compile or choice.cuda_graphs:
        encoder.accelerate(choice.acceleration)  # (on another backend only to warn: torch's)
    return encoder


def _create(choice: EncoderChoice, weights: str, in_background: bool) -> Encoder:
    return encoders.create_encoder(
        choice.kind,
        choice.model,
        weights=weights,
        device=choice.device,
        precision=choice.precision,
        # --compile needs torch: "auto" is decided here with it in view; without it the
        # factory decides (it opens an export a read-only cache holds)
        backend=choice.runs_on if choice.compile else choice.backend,
        export_cache=choice.export_cache,
        int8=choice.int8,
        calibration=calibration_video(choice) if choice.int8 else None,
        export_in_background=in_background,
    )


def calibration_video(choice: EncoderChoice) -> str:
    """The video `--int8` calibrates on: `--calibrate`, else the sample clip (fetched once)."""
    if choice.calibrate is not None:
        return choice.calibrate
    from streamer.core.samples import sample_clip
    from streamer.errors import SampleUnavailableError

    log.info("--int8: calibrating on the sample clip (--calibrate PATH names another video)")
    try:
        return str(sample_clip())
    except SampleUnavailableError as exc:
        raise SampleUnavailableError(
            f"--int8 calibrates on the sample clip when no --calibrate PATH names a video, "
            f"and {exc}"
        ) from exc


class EncoderWorker:
    """Runs an encoder on one dedicated thread.

    The in-process encoder service (`streamer.analysis.service`) drives the encoder only
    through this, so the model and its device are never used from two threads at once.

    Args:
        encoder: the encoder to drive.
        background: the thread runs at low priority (`lower_priority`), and so do the
            threads the model starts from it.
    """

    def __init__(self, encoder: Encoder, *, background: bool = False) -> None:
        self.encoder = encoder
        self._thread = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="encoder",
            initializer=_low_priority_thread if background else not_waited_for_at_exit,
        )

    async def embed(self, images: list[np.ndarray]) -> tuple[np.ndarray, float]:
        """L2-normalised embeddings [len(images), dim], float32, on the host, and the seconds
        spent inside the encoder."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._embed, images)

    async def embed_text(self, texts: list[str]) -> np.ndarray:
        """Text embeddings [len(texts), dim], float32, on the host (CLIP encoders only)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._embed_text, texts)

    def _embed(self, images: list[np.ndarray]) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        out = self.encoder.embed_array(images)
        return out, time.perf_counter() - start

    def _embed_text(self, texts: list[str]) -> np.ndarray:
        return self.encoder.embed_text_array(texts)  # torch-free on an export

    def close(self, *, release: bool = False) -> None:
        """Stop the thread after the running call, cancelling the calls queued.

        Args:
            release: also free the encoder, on a thread of its own that this call does not
                wait for (the worker must hold the only reference: an encoder it was lent
                stays with its owner). Freeing a model takes tens of milliseconds (OpenVINO's
                ViT-B/32: ~50 ms): a run closes its files meanwhile, and the interpreter waits
                for that thread before it exits.
        """
        self._thread.shutdown(wait=not release, cancel_futures=True)
        if release and self.encoder is not None:
            args = (self.encoder,)  # from here on the thread's arguments hold it, nothing else
            self.encoder = None
            dropping = threading.Thread(target=_drop, args=args, name="encoder-release")
            del args
            dropping.start()


def _low_priority_thread() -> None:
    not_waited_for_at_exit()
    lower_priority()


def _drop(encoder: Encoder) -> None:
    """Hold the last reference to `encoder` until this thread ends (its frame and the
    thread's arguments are the only ones left), so it is freed here."""
    del encoder
