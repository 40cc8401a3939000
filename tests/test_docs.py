"""Documentation that is generated must be fresh; commands the README shows must exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_capability_matrix_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-capability-matrix"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_readme_names_existing_scripts() -> None:
    readme = (ROOT / "README.md").read_text()
    for script in set(re.findall(r"(scripts/[\w-]+|\.ci/run)", readme)):
        assert (ROOT / script).exists(), script


def test_api_reference_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-api-doc"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
