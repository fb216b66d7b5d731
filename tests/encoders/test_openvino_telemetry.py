"""A process that runs encoders on OpenVINO sends no usage telemetry: `import openvino` alone
writes a client id into the home folder and sends an event from a forked process (its
`openvino_telemetry` package, on unless the user opted out); after `import encoders` that
package is unimportable, and OpenVINO falls back to its own stub."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino nncf)")

REPO = Path(__file__).resolve().parents[2]
CHECK = """
import sys
{first}
import openvino
from openvino.tools.ovc import telemetry_utils
print(telemetry_utils.tm.__name__)
"""


def _run(home: Path, first: str) -> str:
    """Run CHECK in a fresh interpreter with `home` as its home folder and no CI variables
    (the telemetry package stays quiet in CI); what it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(first=first)], env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_after_import_encoders_openvino_uses_its_stub_and_writes_nothing_home(tmp_path):
    assert _run(tmp_path, "import encoders") == "openvino.tools.ovc.telemetry_stub"
    assert not (tmp_path / "intel").exists()


def test_without_it_openvino_would_send(tmp_path):
    """What the block is for: the same import in a plain process takes the real package."""
    if _run(tmp_path, "") != "openvino_telemetry":
        pytest.skip("this OpenVINO has no telemetry package: nothing to block")
    assert (tmp_path / "intel" / "openvino_ga_cid").exists()  # a client id, in the home folder
