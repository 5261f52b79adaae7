"""Shared fixtures: the public data sets beside the repository, and small simulated logs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of public experiments; a test that needs it fails loudly when it is missing."""
    if not (SHARED_DATA / "hillstrom" / "hillstrom.csv").is_file():
        pytest.fail(
            f"public data sets not found at {SHARED_DATA}: this test reads the Hillstrom and IHDP "
            "experiments from ../shared/data beside the repository (see README, 'Data')."
        )
    return SHARED_DATA
