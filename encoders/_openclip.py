"""Lazy access to open_clip with this package's model configs registered.

open_clip is imported on first use, not when `encoders` is imported, so `import encoders` stays
fast for code that never builds a CLIP model (the CLI's --help, the web viewer). Its model names
are read without importing it (`model_names`): importing open_clip imports torch and
torchvision, seconds that a run from a cached export does not otherwise spend.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

_CONFIG_DIR = Path(__file__).parent / "model_configs"
_lock = threading.Lock()
_registered = False


def load_open_clip() -> ModuleType:
    """Import open_clip and register `encoders/model_configs/*.json` (the tiny test model).

    Returns:
        The `open_clip` module.
    """
    global _registered
    import open_clip

    with _lock:
        # add_model_config appends to open_clip's search path and rescans on every call.
        if not _registered:
            open_clip.add_model_config(_CONFIG_DIR)
            _registered = True
    return open_clip


@contextlib.contextmanager
def root_logging_kept() -> Iterator[None]:
    """For a block that calls open_clip: it logs through the logging module's functions
    (`logging.info`), which set the root logger up (`basicConfig`) when it has no handler, and
    a library must leave that to the program (whose own `basicConfig` then does nothing).
    A root logger without handlers gets a `NullHandler` for the block, so open_clip's lines
    are dropped there; what matters of them this package logs itself (random weights)."""
    root = logging.getLogger()
    if root.handlers:  # the program's (or the command line's): open_clip's lines go there
        yield
        return
    quiet = logging.NullHandler()
    root.addHandler(quiet)
    try:
        yield
    finally:
        root.removeHandler(quiet)


#: The keys open_clip requires of a model config file before it lists the model.
_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")


def model_names() -> list[str]:
    """The model names `open_clip.list_models()` gives after `load_open_clip`, found without
    importing open_clip: the config files in its package's `model_configs` folder and ours,
    kept when they have the keys open_clip requires (as open_clip itself reads them).

    Raises:
        ModuleNotFoundError: open_clip is not installed.
    """
    if "open_clip" in sys.modules:  # imported already: its own list costs nothing
        return load_open_clip().list_models()
    return list(_config_file_names())


def _config_file_names() -> tuple[str, ...]:
    files = _config_files()
    if files is None:  # not a plain package: ask it
        return tuple(load_open_clip().list_models())
    return tuple(sorted(files))


@functools.cache
def _config_files() -> dict[str, Path] | None:
    """Model name → its config file, as open_clip registers them: the files with the keys it
    requires in its package's `model_configs` folder, then in ours, a later file of a name in
    place of an earlier one. None: open_clip is not installed as a plain package."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    folders = [Path(p) / "model_configs" for p in spec.submodule_search_locations]
    files = {}
    for path in (f for folder in [*folders, _CONFIG_DIR] for f in sorted(folder.glob("*.json"))):
        if _read_config(path) is not None:
            files[path.stem] = path
    return files


def _read_config(path: Path) -> dict | None:
    """The model config in `path`; None when open_clip would not list it (unreadable, or
    without the keys it requires)."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # open_clip would fail on it at import; not a name anyone can use
    if isinstance(config, dict) and all(key in config for key in _CONFIG_KEYS):
        return config
    return None


#: The `tokenizer_kwargs` a config may give that leave open_clip's `SimpleTokenizer` as it is.
_DEFAULT_TOKENIZER_KWARGS = {"clean": "lower", "reduction_mask": ""}


def simple_tokenizer_context(name: str) -> int | None:
    """The context length when `open_clip.get_tokenizer(name)` gives its `SimpleTokenizer` with
    the default cleaning, read from the model's config file (open_clip not imported); None when
    it gives another tokenizer (a Hugging Face one named by the config's `hf_tokenizer_name`,
    SigLIP's for a name with "siglip" in it), other settings (`tokenizer_kwargs`), or when the
    config is not found. open_clip's own rule is in `open_clip.factory.get_tokenizer`."""
    path = (_config_files() or {}).get(name)
    config = None if path is None else _read_config(path)
    text = config.get("text_cfg") if config is not None else None
    if not isinstance(text, dict) or "siglip" in name.lower() or text.get("hf_tokenizer_name"):
        return None
    kwargs = text.get("tokenizer_kwargs") or {}
    if not isinstance(kwargs, dict) or any(
        _DEFAULT_TOKENIZER_KWARGS.get(key, object()) != value for key, value in kwargs.items()
    ):
        return None
    context = text.get("context_length", 77)
    return context if type(context) is int and context >= 2 else None
