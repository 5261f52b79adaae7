"""Fixtures of the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from uplift.models import signing


@pytest.fixture(autouse=True)
def own_key(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh key location per test: no test reads or writes the real home directory's key.
    Its value is where the model key would be written."""
    config = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    monkeypatch.delenv(signing.KEY_ENV, raising=False)
    return config / "uplift" / "model.key"
