"""Retention (`streamer.archive.retention`): what `--retain` and `archive prune` delete."""

from __future__ import annotations

import os
import time

from streamer.archive.retention import apply_retention


class _Index:
    """The part of an `Archive` retention uses, with an empty index."""

    def __init__(self, root):
        self.root = root
        self.pruned_before: list[float] = []

    def prune_index(self, before, stream=None):
        self.pruned_before.append(before)
        return 0


def _clip(root, name: str, age_s: float, now: float):
    path = root / "clips" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 100)
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_retain_deletes_alert_clips_older_than_it_and_keeps_the_rest(tmp_path):
    """A camera that alerts all day must not fill the disk with clips that --retain outlived."""
    now = time.time()
    old = _clip(tmp_path, "door/20250101T000000.000Z-a-person.mp4", 3600, now)
    young = _clip(tmp_path, "door/20250101T005900.000Z-a-person.mp4", 30, now)
    other = _clip(tmp_path, "yard/20250101T000000.000Z-a-van.mp4", 3600, now)
    (tmp_path / "clips" / "clips.jsonl").write_text('{"clip": "clips/door/x.mp4"}\n')
    pruned = apply_retention(_Index(tmp_path), retain_s=600, max_gb=None, now=now)
    assert not old.exists() and not other.exists() and young.exists()
    assert pruned.clips == 2
    assert (tmp_path / "clips" / "clips.jsonl").exists()


def test_a_size_limit_alone_leaves_the_clips(tmp_path):
    now = time.time()
    clip = _clip(tmp_path, "door/20250101T000000.000Z-a-person.mp4", 3600, now)
    assert apply_retention(_Index(tmp_path), retain_s=None, max_gb=1.0, now=now).clips == 0
    assert clip.exists()
