"""CLIP's byte-level BPE tokenizer in numpy, without torch or open_clip.

An encoder opened from a cached export runs CLIP's text tower on its runtime, and needs only
the token ids: open_clip's tokenizer would import open_clip, and so torch (seconds and hundreds
of megabytes), for a table lookup. `ClipTokenizer` gives the ids open_clip's default
`SimpleTokenizer` gives (as `open_clip.tokenize` and `get_tokenizer` for most CLIP models):

1. cleaning: ftfy's `fix_text`, HTML entities unescaped twice, outer whitespace stripped, every
   run of whitespace made one space, lower case;
2. pre-tokenisation with the `regex` module: the start and end markers, the English
   contractions 's 't 're 've 'm 'll 'd, runs of letters, single digits, runs of other
   non-space characters;
3. each piece's UTF-8 bytes as printable characters (GPT-2's byte-to-unicode table), the last
   one marked "</w>" (end of word), merged pair by pair in the order of the vocabulary's merge
   list, lowest rank first;
4. the start-of-text id, the pieces' ids, the end-of-text id; cut to the context length with
   the end-of-text id kept last, and padded with zeros.

The vocabulary is the merge list open_clip ships (`bpe_simple_vocab_16e6.txt.gz`), found
through the import system without importing open_clip, and read once per process.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ClipTokenizer", "text_length", "vocab_path"]

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
START, END = "<start_of_text>", "<end_of_text>"
_MERGES = 49152 - 256 - 2  # the merges CLIP uses: 49408 ids = 256 bytes * 2 + merges + 2 markers
_CACHE_WORDS = 100_000  # merged words kept (a label vocabulary has a few thousand)
# The pre-tokenisation: the markers, contractions, letter runs, one digit, other symbol runs.
_PATTERN = rf"{START}|{END}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+"


def vocab_path() -> Path:
    """The merge list in the installed open_clip package (its folder is found, the package is
    not imported).

    Raises:
        FileNotFoundError: open_clip is not installed as a plain package, or lacks the file.
    """
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / VOCAB_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{VOCAB_FILE} not found: the open_clip package is not installed")


def byte_alphabet() -> list[str]:
    """A printable character for each byte value 0..255: the printable Latin-1 bytes stand for
    themselves, the others (controls, space, soft hyphen) for 256, 257, ... in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    chars, extra = {b: chr(b) for b in printable}, 0
    for byte in range(256):
        if byte not in chars:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[byte] for byte in range(256)]


@dataclass
class _Vocabulary:
    """The ids and merge ranks of CLIP's vocabulary, and what uses them."""

    ids: dict[str, int]
    ranks: dict[tuple[str, str], int]
    alphabet: list[str]
    pattern: Any  # the compiled pre-tokenisation (a `regex` pattern)
    words: dict[str, tuple[int, ...]] = field(default_factory=dict)  # merged words, as ids

    @classmethod
    def read(cls, path: Path) -> _Vocabulary:
        import ftfy  # noqa: F401 - the cleaning's: missing, an ImportError here, not at a text
        import regex

        lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : _MERGES + 1]]  # line 0: a header
        alphabet = byte_alphabet()
        chars = sorted(alphabet)  # the ids' order: the printable bytes, then the stand-ins
        names = [*chars, *(c + "</w>" for c in chars), *("".join(m) for m in merges)]
        ids = {name: i for i, name in enumerate([*names, START, END])}
        ranks = {(m[0], m[1]): rank for rank, m in enumerate(merges)}
        return cls(ids, ranks, alphabet, regex.compile(_PATTERN, regex.IGNORECASE))

    def encode(self, text: str) -> list[int]:
        """The ids of cleaned `text`, without the start and end ids."""
        out: list[int] = []
        for piece in self.pattern.findall(text):
            if piece in (START, END):  # a marker written in the text stands for itself
                out.append(self.ids[piece])
                continue
            word = "".join(self.alphabet[b] for b in piece.encode("utf-8"))
            ids = self.words.get(word)
            if ids is None:
                ids = tuple(self.ids[s] for s in self.merge(word))
                if len(self.words) >= _CACHE_WORDS:
                    self.words.clear()
                self.words[word] = ids
            out.extend(ids)
        return out

    def merge(self, word: str) -> list[str]:
        """`word`'s symbols ("</w>" on the last), the pair of lowest rank merged at each step
        (everywhere it occurs, left to right) until no adjacent pair is in the merge list."""
        symbols = [*word[:-1], word[-1] + "</w>"]
        while len(symbols) > 1:
            ranked = (self.ranks.get(pair) for pair in itertools.pairwise(symbols))
            best = min((rank for rank in ranked if rank is not None), default=None)
            if best is None:
                break
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                pair = (symbols[i], symbols[i + 1]) if i + 1 < len(symbols) else None
                if pair is not None and self.ranks.get(pair) == best:
                    merged.append(pair[0] + pair[1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols


_lock = threading.Lock()
_vocabulary: _Vocabulary | None = None


def _shared_vocabulary() -> _Vocabulary:
    """The vocabulary, read on first use and shared by every tokenizer of the process."""
    global _vocabulary
    with _lock:
        if _vocabulary is None:
            _vocabulary = _Vocabulary.read(vocab_path())
        return _vocabulary


def text_length(ids: Any) -> int:
    """How many leading positions of token ids [B, T] (numpy or torch) hold every row's
    end-of-text token, the largest id of a row (CLIP's vocabulary ends with it): a model
    with a causal mask that pools there reads nothing after them (`ClipEncoder.text_any_length`)."""
    return int(ids.argmax(-1).max()) + 1 if len(ids) else 1


def clean(text: str) -> str:
    """The text as CLIP's tokenizer cleans it by default (see the module's docstring)."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


class ClipTokenizer:
    """Texts → CLIP token ids, as open_clip's `SimpleTokenizer` with its default cleaning.

    Args:
        context_length: the ids per text (77 for most CLIP models).

    Raises:
        FileNotFoundError: open_clip's vocabulary file is not installed.
    """

    def __init__(self, context_length: int = 77) -> None:
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2, got {context_length}")
        self.context_length = context_length
        self._vocabulary = _shared_vocabulary()
        self.start_id = self._vocabulary.ids[START]
        self.end_id = self._vocabulary.ids[END]

    def encode(self, text: str) -> list[int]:
        """The ids of `text`, without the start and end ids and without truncation."""
        return self._vocabulary.encode(clean(text))

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """int64 ids [len(texts), context_length] (one row for a str): start, the text's ids,
        end, zeros after; a longer text is cut, its last kept id replaced by the end id."""
        texts = [texts] if isinstance(texts, str) else texts
        out = np.zeros((len(texts), self.context_length), np.int64)
        for row, text in enumerate(texts):
            ids = [self.start_id, *self.encode(text), self.end_id][: self.context_length]
            ids[-1] = self.end_id
            out[row, : len(ids)] = ids
        return out

    def __repr__(self) -> str:
        return f"ClipTokenizer(context_length={self.context_length})"
