"""The overlay's fonts for text beyond ASCII: found once per process, tried in a fixed order.

Each character is drawn with the first font of the chain that has a glyph for it:

1. well-known font files, wherever the system keeps its fonts: a Latin/Greek/Cyrillic face
   first (DejaVu Sans, Noto Sans, Liberation Sans, Arial), as it sets the look of most text,
   then faces for Chinese, Japanese and Korean (Noto Sans CJK, Droid Sans Fallback, WenQuanYi,
   the Windows and macOS system faces) and symbol faces;
2. what fontconfig (`fc-match`, where installed) picks for sans-serif text in general and for
   Japanese, Chinese and Korean, for systems that keep other fonts;
3. the font Pillow bundles (Latin only), so a machine without any font still has one.

The chain is empty only where Pillow has no FreeType support; the overlay then draws ASCII.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from PIL import ImageFont

__all__ = ["BUNDLED", "LOCK", "chain", "has_glyph", "load"]

BUNDLED = "<pillow>"  # the key of Pillow's bundled font, which has no file
# FreeType faces are not safe to use from two threads at once, and each stream draws in its own.
LOCK = threading.RLock()

_WELL_KNOWN = (
    "DejaVuSans.ttf", "NotoSans-Regular.ttf", "LiberationSans-Regular.ttf", "Arial.ttf",
    "arial.ttf", "NotoSansCJK-Regular.ttc", "NotoSansCJKjp-Regular.otf",
    "NotoSansCJKsc-Regular.otf", "DroidSansFallbackFull.ttf", "DroidSansFallback.ttf",
    "wqy-microhei.ttc", "wqy-zenhei.ttc", "msgothic.ttc", "msyh.ttc", "malgun.ttf",
    "Arial Unicode.ttf", "Hiragino Sans GB.ttc", "NotoSansSymbols2-Regular.ttf", "seguisym.ttf",
)  # fmt: skip
# Sans-serif for text in general, then for Japanese, Chinese and Korean.
_FONTCONFIG_QUERIES = ("sans-serif", "sans-serif:lang=ja", "sans-serif:lang=zh-cn", "sans:lang=ko")
_FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
# A code point no font maps: it renders as the font's "missing glyph" (.notdef) symbol.
_UNMAPPED = "\U0010fffd"
_PROBE_PX = 24


@functools.cache
def chain() -> tuple[str, ...]:
    """Font files in fallback order, then `BUNDLED`; empty without FreeType support."""
    if not hasattr(ImageFont, "core") or not hasattr(ImageFont.core, "getfont"):
        return ()
    found = _font_files()
    paths = [found[name] for name in _WELL_KNOWN if name in found] + _fontconfig_matches()
    keys = [p for p in dict.fromkeys(paths) if _loads(p)]
    if _loads(BUNDLED):
        keys.append(BUNDLED)
    return tuple(keys)


@functools.lru_cache(maxsize=64)
def load(key: str, px: int) -> ImageFont.FreeTypeFont:
    """The font `key` (a path or `BUNDLED`) at `px` pixels per em."""
    if key == BUNDLED:
        font = ImageFont.load_default(px)
        if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow < 10.1: a fixed bitmap font
            raise OSError("Pillow's bundled font is not scalable")
        return font
    return ImageFont.truetype(key, px)


@functools.lru_cache(maxsize=16384)
def has_glyph(key: str, ch: str) -> bool:
    """Whether font `key` draws `ch` as itself rather than as its missing-glyph symbol."""
    with LOCK:
        font = load(key, _PROBE_PX)
        glyph, missing = font.getmask(ch), font.getmask(_UNMAPPED)
        return glyph.size != missing.size or bytes(glyph) != bytes(missing)


def _loads(key: str) -> bool:
    try:
        load(key, _PROBE_PX)
    except (OSError, ValueError):
        return False
    return True


def _font_dirs() -> list[Path]:
    home = Path.home()
    if sys.platform == "win32":
        windir = os.environ.get("WINDIR", "C:\\Windows")
        local = os.environ.get("LOCALAPPDATA", str(home))
        return [Path(windir, "Fonts"), Path(local, "Microsoft", "Windows", "Fonts")]
    if sys.platform == "darwin":
        return [Path("/System/Library/Fonts"), Path("/Library/Fonts"), home / "Library/Fonts"]
    data = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    user = os.environ.get("XDG_DATA_HOME") or str(home / ".local/share")
    return [Path(d, "fonts") for d in [user, *data.split(":")] if d] + [home / ".fonts"]


def _font_files() -> dict[str, str]:
    """File name → path of every font file in the system's font folders (the first one wins)."""
    found: dict[str, str] = {}
    for folder in _font_dirs():
        for root, _, files in os.walk(folder):
            for name in files:
                if name.lower().endswith(_FONT_SUFFIXES):
                    found.setdefault(name, os.path.join(root, name))
    return found


def _fontconfig_matches() -> list[str]:
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return []
    paths = []
    for query in _FONTCONFIG_QUERIES:
        try:
            done = subprocess.run(
                [fc_match, "--format=%{file}", query],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        path = done.stdout.strip()
        if done.returncode == 0 and path.lower().endswith(_FONT_SUFFIXES):
            paths.append(path)
    return paths
