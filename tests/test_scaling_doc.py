"""docs/scaling.md stays honest: every measured figure it quotes still stands, word for word, in
the section of BENCHMARKS.md its source table names; the frame and embedding sizes and the
default analysis rate it computes with are the code's; and the relative links of the README and
docs/ lead to files and headings that exist.

Each check is a function from the documents' text to a list of problems, so the tests at the end
can feed it a document with one fact changed and see the problem reported.
"""

import re
from pathlib import Path

import pytest

import encoders
from streamer.analysis.options import AnalysisConfig

REPO = Path(__file__).resolve().parents[1]
SCALING = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
BENCHMARKS = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
SOURCE_HEADER = "| # | figure | value | BENCHMARKS.md section |"


def _flat(text: str) -> str:
    """Whitespace runs as one space: a quoted figure may wrap differently in the two files."""
    return " ".join(text.split())


def _sections(markdown: str) -> dict[str, str]:
    """Heading text → the text under it, up to the next heading of any level."""
    sections: dict[str, str] = {}
    title, lines = None, []
    fenced = False
    for line in markdown.splitlines():
        fenced ^= line.startswith("```")
        heading = None if fenced else re.match(r"#{1,6} (.+)", line)
        if heading:
            if title is not None:
                sections[title] = "\n".join(lines)
            title, lines = heading.group(1).strip(), []
        else:
            lines.append(line)
    if title is not None:
        sections[title] = "\n".join(lines)
    return sections


def _source_rows(scaling: str) -> list[tuple[str, list[str], str]]:
    """(tag, quoted values, section) of each row of the source table."""
    lines = scaling.splitlines()
    if SOURCE_HEADER not in lines:
        return []
    rows = []
    for row in lines[lines.index(SOURCE_HEADER) + 2 :]:
        if not row.startswith("|"):
            break
        tag, _, value, section = (cell.strip() for cell in row.strip()[1:-1].split(" | "))
        rows.append((tag, re.findall(r"`([^`]+)`", value), section))
    return rows


def source_problems(scaling: str, benchmarks: str) -> list[str]:
    """Where a figure of the source table is not (or no longer) in its BENCHMARKS.md section,
    and where the prose cites a tag the table lacks or the table has one the prose never uses."""
    rows = _source_rows(scaling)
    if not rows:
        return [f"docs/scaling.md: no source table ({SOURCE_HEADER})"]
    sections = {_flat(title): _flat(body) for title, body in _sections(benchmarks).items()}
    problems = []
    for tag, values, section in rows:
        body = sections.get(_flat(section))
        if body is None:
            problems.append(f"{tag}: BENCHMARKS.md has no section {section!r}")
            continue
        if not values:
            problems.append(f"{tag}: no `value` quoted")
        problems += [f"{tag}: {v!r} is not in BENCHMARKS.md section {section!r}"
                     for v in values if _flat(v) not in body]  # fmt: skip
    table_start = scaling.index(SOURCE_HEADER)
    cited = set(re.findall(r"\[(M\d+)\]", scaling[:table_start]))
    listed = {tag for tag, _, _ in rows}
    problems += [f"docs/scaling.md cites [{t}], which the source table lacks"
                 for t in sorted(cited - listed)]  # fmt: skip
    problems += [f"the source table lists {t}, which the text never cites"
                 for t in sorted(listed - cited)]  # fmt: skip
    return problems


def premise_problems(scaling: str) -> list[str]:
    """The frame and embedding sizes and the analysis rate the arithmetic starts from are the
    default encoder's and the default configuration's."""
    spec = next(s for s in encoders.list_encoders() if (s.kind, s.model) == ("clip", "ViT-B/32"))
    side = spec.preprocess.size
    frame, embedding = side * side * 3, spec.dim * 4
    rate = AnalysisConfig().analyze_fps
    said = {
        f"{side} × {side} × 3 bytes = {frame:,} bytes": "the analysis frame's size",
        f"{spec.dim} × 4 bytes = {embedding:,} bytes": "the embedding's size",
        f"{rate:g} × {frame:,} B = {int(rate * frame):,} B/s": "the frames' bytes per second",
        f"`--analyze-fps {rate:g}`": "the default analysis rate",
    }
    text = _flat(scaling)
    return [f"docs/scaling.md: {what} should read {want!r}"
            for want, what in said.items() if want not in text]  # fmt: skip


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def link_problems(documents: dict[Path, str]) -> list[str]:
    """Relative links (`[x](path)`, `[x](path#anchor)`, `[x](#anchor)`) that lead nowhere."""
    problems = []
    for path, text in documents.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked here (no network in the tests)
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                problems.append(f"{path.name}: link to {target}: no such file")
                continue
            if anchor and linked.suffix == ".md":
                body = documents.get(linked) or linked.read_text(encoding="utf-8")
                anchors = {_anchor(title) for title in _sections(body)}
                if anchor not in anchors:
                    problems.append(f"{path.name}: link to {target}: no such heading")
    return problems


def _documents() -> dict[Path, str]:
    paths = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
    return {p.resolve(): p.read_text(encoding="utf-8") for p in paths}


def test_every_quoted_figure_stands_in_its_benchmarks_section():
    assert source_problems(SCALING, BENCHMARKS) == []


def test_the_arithmetic_starts_from_the_codes_sizes_and_rate():
    assert premise_problems(SCALING) == []


def test_relative_links_of_the_readme_and_docs_lead_somewhere():
    assert link_problems(_documents()) == []


def test_the_readme_links_the_scaling_page():
    assert "](docs/scaling.md)" in (REPO / "README.md").read_text(encoding="utf-8")


# -- each check reports a document with one fact changed ---------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("`22,422`", "`22,442`"),  # a figure mistyped
        # the right figure, the wrong section
        ("| `35.40` | Archive on vs off", "| `35.40` | File annotation throughput"),
        ("| M18 |", "| M19 |"),  # the table's tag no longer the one the text cites
    ],
)
def test_a_figure_that_does_not_stand_is_reported(old, new):
    assert old in SCALING
    assert source_problems(SCALING.replace(old, new), BENCHMARKS) != []


def test_a_changed_benchmark_figure_is_reported():
    assert "| clip:ViT-B/32 | 151.3 | 577 | 168.6 |" in BENCHMARKS
    rerun = BENCHMARKS.replace("| clip:ViT-B/32 | 151.3 | 577 | 168.6 |",
                               "| clip:ViT-B/32 | 151.3 | 577 | 150.2 |")  # fmt: skip
    assert source_problems(SCALING, rerun) != []


@pytest.mark.parametrize(("old", "new"), [("150,528 bytes", "150,000 bytes"),
                                          ("`--analyze-fps 2`", "`--analyze-fps 5`")])  # fmt: skip
def test_a_wrong_premise_is_reported(old, new):
    assert old in SCALING
    assert premise_problems(SCALING.replace(old, new)) != []


@pytest.mark.parametrize(
    "link", ["[x](docs/nowhere.md)", "[x](#no-such-heading)", "[x](docs/scaling.md#nowhere)"]
)
def test_a_broken_link_is_reported(link):
    readme = (REPO / "README.md").resolve()
    documents = _documents()
    documents[readme] += f"\n{link}\n"
    assert link_problems(documents) != []
