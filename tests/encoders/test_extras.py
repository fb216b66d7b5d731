"""Install hints name the packages of an extra, never `streamer[extra]` (the name `streamer` on
PyPI is another project's), and the fallback copy of the extras is pyproject.toml's."""

import tomllib
from pathlib import Path

from encoders import extras

REPO = Path(__file__).resolve().parents[2]


def test_the_fallback_extras_are_pyproject_s() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = {k: tuple(v) for k, v in declared["optional-dependencies"].items() if k != "test"}
    assert optional == extras._PYPROJECT


def test_a_hint_names_the_packages_of_the_extra(monkeypatch) -> None:
    assert extras.install_hint("cpu") == 'pip install "openvino>=2026.4" "nncf>=3.4"'
    assert extras.install_hint("cpu", "nncf") == 'pip install "nncf>=3.4"'
    # Without this installation's metadata (a checkout on PYTHONPATH): the same, from the copy.
    extras.packages.cache_clear()
    monkeypatch.setattr(extras, "_DISTRIBUTION", "no-such-distribution")
    try:
        assert extras.install_hint("mqtt") == 'pip install "aiomqtt>=2"'
    finally:
        extras.packages.cache_clear()
