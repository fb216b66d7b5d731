"""The README's Python snippets and the examples run as written; what the README says about the
encoders (the encoder table, the selection matrix, which ones give tags, the `--encoder` examples)
matches the registry row by row.

The README checks are functions from the README's text to a list of problems, so the tests at
the end can feed them a README with one fact changed and see the problem reported.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import encoders

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _run(args, cwd, env):
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_readme_has_python_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, user_env):
    script = tmp_path / "snippet.py"
    script.write_text(SNIPPETS[index])
    _run([str(script)], tmp_path, user_env)
    if "run_pipeline" in SNIPPETS[index]:
        assert (tmp_path / "out.mp4").stat().st_size > 0
        assert (tmp_path / "out.srt").read_text().startswith("1\n")


@pytest.mark.integration
@pytest.mark.slow
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


@pytest.mark.integration
@pytest.mark.slow
def test_example_embed_frames(tmp_path, user_env):
    done = _run([str(REPO / "examples" / "embed_frames.py")], tmp_path, user_env)
    assert "similarity of frame 0" in done.stdout


# -- the README's statements about the encoders, against the registry -------------------------


def _table(text: str, header_start: str) -> list[list[str]]:
    """The body rows (cells stripped) of the markdown table whose header begins `header_start`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header_start):
            rows = []
            for row in lines[i + 2 :]:  # past the header and its |---| line
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip()[1:-1])])
            return rows
    return []


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _encoder_rows(text: str) -> tuple[dict[tuple[str, str], dict[str, str]], list[str]]:
    """(kind, model) → the row's cells, one entry per model of a row like DINOv2's, whose
    models and dims are lists joined by " / "."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    problems = []
    table = _table(text, "| kind | model |")
    if not table:
        return rows, ["README: no encoder table (| kind | model | ...)"]
    for cells in table:
        if len(cells) != 7:
            problems.append(f"README encoder table: a row without 7 cells: {cells}")
            continue
        kind_cell, model_cell, dim_cell, tokens, size, text_tags, weights = cells
        if "any open_clip name" in model_cell:
            continue  # names open_clip accepts beyond the registered ones: nothing to compare
        (kind,) = _ticked(kind_cell)
        models = _ticked(model_cell)
        dims = [d.strip() for d in dim_cell.split("/")]
        if len(dims) != len(models):
            problems.append(f"README: {kind} row lists {len(models)} models but {len(dims)} dims")
            continue
        for model, dim in zip(models, dims, strict=True):
            rows[(kind, model)] = {"dim": dim, "tokens": tokens, "input": size,
                                   "text": text_tags, "weights": weights}  # fmt: skip
    return rows, problems


def _input_says(spec) -> str:
    pre = spec.preprocess
    resize = f"{pre.resize_size} → " if pre.resize_size is not None else ""
    return f"{resize}{pre.size} px"


def encoder_table_problems(text: str) -> list[str]:
    """Where the README's encoder table and `encoders.list_encoders()` disagree."""
    rows, problems = _encoder_rows(text)
    specs = {(s.kind, s.model): s for s in encoders.list_encoders()}
    for key in rows.keys() - specs.keys():
        problems.append(f"README lists {key[0]} {key[1]!r}, which is not registered")
    for key, spec in specs.items():
        row = rows.get(key)
        if row is None:
            problems.append(f"README encoder table lacks {key[0]} {key[1]!r}")
            continue
        width = "dim" if spec.token_dim == spec.dim else str(spec.token_dim)
        says = {"dim": str(spec.dim), "input": _input_says(spec),
                "text": "yes" if spec.has_text else "no"}  # fmt: skip
        tokens = row["tokens"].split(" × ")
        if tokens not in ([str(spec.tokens), width], [str(spec.tokens), str(spec.token_dim)]):
            problems.append(f"{key}: README says {row['tokens']!r} tokens × width, the registry "
                            f"{spec.tokens} × {spec.token_dim}")  # fmt: skip
        for column, want in says.items():
            if row[column] != want:
                problems.append(f"{key}: README {column} {row[column]!r}, registry {want!r}")
        for source in _ticked(row["weights"]):  # e.g. `openai`, `facebook/dinov2-*`
            if source.replace("*", spec.model) not in spec.weights:
                problems.append(f"{key}: README weights {source!r}, registry {spec.weights!r}")
    return problems


def matrix_problems(text: str) -> list[str]:
    """Where the README's use-case table and `encoders.encoder_matrix()` disagree."""
    said = [(cells[0], *(_ticked(cells[1]) + _ticked(cells[2])), cells[3])
            for cells in _table(text, "| use case | encoder |")]  # fmt: skip
    want = [(u.name, u.kind, u.model, u.why) for u in encoders.encoder_matrix()]
    if said == want:
        return []
    return [f"README use-case table {said} differs from encoders.encoder_matrix() {want}"]


def text_tower_problems(text: str) -> list[str]:
    """The README's list of encoders without a text tower is the registry's."""
    found = re.search(r"Encoders without\s+a text tower \(([^)]*)\)", text)
    if found is None:
        return ["README: no sentence 'Encoders without a text tower (...)'"]
    said = {name.strip().lower() for name in found.group(1).split(",")}
    want = {s.kind for s in encoders.list_encoders() if not s.has_text}
    return [] if said == want else [f"README: without text tower {said}, registry {want}"]


def command_problems(text: str) -> list[str]:
    """Every `--encoder K --model M` of a README command is registered; one marked
    "no tags" has no text tower."""
    specs = {(s.kind, s.model): s for s in encoders.list_encoders()}
    problems = []
    for kind, model, rest in re.findall(r"--encoder (\S+) --model (\S+)(.*)", text):
        spec = specs.get((kind, model))
        if spec is None:
            problems.append(f"README runs --encoder {kind} --model {model}: not registered")
        elif "no tags" in rest and spec.has_text:
            problems.append(f"README says {kind} {model} gives no tags, but it has text")
    return problems


CHECKS = (encoder_table_problems, matrix_problems, text_tower_problems, command_problems)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_readme_says_what_the_registry_says(check):
    assert check(README) == []


DINO_ROW = (
    "| `dinov2` | `small` / `base` / `large` / `giant` | 384 / 768 / 1024 / 1536 | 257 × dim "
    "| 256 → 224 px | no | `facebook/dinov2-*` (HF cache) or a local folder/file |"
)

# Each DINOv2 fact of the encoder table changed alone: a dim, the models' order, a model left
# out (with its dim), a model renamed, the token count, the input size, the text tower, the
# weights' source.
DINO_ROW_CHANGES = [
    ("384 / 768", "384 / 769"),
    ("`base` / `large`", "`large` / `base`"),
    (" / `giant` | 384 / 768 / 1024 / 1536", " | 384 / 768 / 1024"),
    ("`giant`", "`huge`"),
    ("257 × dim", "256 × dim"),
    ("256 → 224 px", "224 px"),
    ("| no |", "| yes |"),
    ("facebook/dinov2-*", "facebook/dino-*"),
]


@pytest.mark.parametrize(("old", "new"), DINO_ROW_CHANGES)
def test_a_wrong_dinov2_row_in_the_encoder_table_is_reported(old, new):
    assert DINO_ROW in README and old in DINO_ROW
    assert encoder_table_problems(README.replace(DINO_ROW, DINO_ROW.replace(old, new))) != []


@pytest.mark.parametrize(
    ("old", "new", "check"),
    [
        ("| `dinov2` | `base` |", "| `dinov2` | `small` |", matrix_problems),
        ("text tower (DINOv2, default)", "text tower (default)", text_tower_problems),
        ("--encoder dinov2 --model small", "--encoder dinov2 --model tiny", command_problems),
        ("--encoder dinov2 --model small", "--encoder clip --model tiny", command_problems),
    ],
)
def test_a_wrong_dinov2_statement_elsewhere_in_the_readme_is_reported(old, new, check):
    assert old in README
    assert check(README.replace(old, new)) != []
