"""The README's Python snippets and the examples run as written; the README's encoder table
names every registered encoder."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import encoders

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.S)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def user_env(tmp_path, sample_clip):
    """A user's environment: the sample clip already in their cache, no repo on sys.path."""
    cached = tmp_path / "cache" / "streamer" / "samples" / "bigbuckbunny.mp4"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(sample_clip.read_bytes())
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("PYTHONPATH", None)
    return env


def _run(args, cwd, env):
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_readme_has_python_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, user_env):
    script = tmp_path / "snippet.py"
    script.write_text(SNIPPETS[index])
    _run([str(script)], tmp_path, user_env)
    if "run_pipeline" in SNIPPETS[index]:
        assert (tmp_path / "out.mp4").stat().st_size > 0
        assert (tmp_path / "out.srt").read_text().startswith("1\n")


def test_example_annotate_file(tmp_path, user_env):
    done = _run(
        [str(REPO / "examples" / "annotate_file.py"), "", str(tmp_path / "o")], tmp_path, user_env
    )
    assert "132 frames" in done.stdout
    assert {p.name for p in (tmp_path / "o").iterdir()} == {
        "annotated.mp4",
        "annotated.srt",
        "annotated.vtt",
        "annotated.jsonl",
    }


def test_example_embed_frames(tmp_path, user_env):
    done = _run([str(REPO / "examples" / "embed_frames.py")], tmp_path, user_env)
    assert "similarity of frame 0" in done.stdout


def test_readme_encoder_table_lists_every_registered_model():
    for spec in encoders.list_encoders():
        assert f"`{spec.model}`" in README or (spec.kind == "dinov2" and spec.model in README)
