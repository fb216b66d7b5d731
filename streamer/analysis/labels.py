"""The label vocabulary for zero-shot tags: the shipped default, or the user's own."""

from __future__ import annotations

import os
from importlib import resources

from streamer.errors import ConfigError

DEFAULT_PROMPT = "a photo of {label}."


def default_labels() -> tuple[str, ...]:
    """The vocabulary that ships with the package (`streamer/analysis/labels.txt`)."""
    text = resources.files("streamer.analysis").joinpath("labels.txt").read_text(encoding="utf-8")
    return _parse(text)


def load_labels(spec: str | None) -> tuple[str, ...]:
    """Resolve a `--labels` value.

    Args:
        spec: None for the default vocabulary, a path to a text file (one label per line, `#`
            comments), or a comma-separated list ("dog, cat, person").

    Returns:
        Unique labels in the order given.

    Raises:
        ConfigError: the file cannot be read or the list is empty.
    """
    if spec is None:
        return default_labels()
    if os.path.isfile(spec):
        try:
            with open(spec, encoding="utf-8") as fh:
                labels = _parse(fh.read())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--labels: cannot read {spec!r}: {exc}") from exc
    elif os.sep in spec or spec.endswith(".txt"):
        raise ConfigError(f"--labels: file {spec!r} does not exist")
    else:
        labels = _parse(spec.replace(",", "\n"))
    if not labels:
        raise ConfigError(f"--labels: no labels in {spec!r}; give a file or 'dog, cat, person'")
    return labels


def _parse(text: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for line in text.splitlines():
        label = line.split("#", 1)[0].strip()
        if label:
            seen.setdefault(label, None)
    return tuple(seen)


def prompts(labels: tuple[str, ...], template: str = DEFAULT_PROMPT) -> list[str]:
    """Text prompts for the text encoder, one per label."""
    if "{label}" not in template:
        raise ConfigError(f"prompt template must contain '{{label}}', got {template!r}")
    return [template.format(label=label) for label in labels]
