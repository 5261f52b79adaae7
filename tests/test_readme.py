"""The README's Python example runs, against the public API only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import uplift
from uplift import simulate, write_table

README = Path(__file__).resolve().parents[1] / "README.md"


def example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


def test_the_example_imports_only_the_public_api() -> None:
    imported = []
    for node in ast.walk(ast.parse(example())):
        if isinstance(node, ast.ImportFrom):
            assert node.module == "uplift", f"imports from {node.module}, not the public API"
            imported += [alias.name for alias in node.names]
        assert not isinstance(node, ast.Import)
    assert imported
    assert set(imported) <= set(uplift.__all__)


def test_every_public_name_resolves() -> None:
    missing = [name for name in uplift.__all__ if not hasattr(uplift, name)]
    assert missing == []


@pytest.mark.slow
def test_the_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # the key of a signed model
    write_table(simulate(20_000, weeks=4, seed=1).log, tmp_path / "log.parquet")
    namespace: dict[str, object] = {}
    exec(compile(example(), str(README), "exec"), namespace)
    queue = namespace["queue"]
    assert len(queue) == 10_000  # type: ignore[arg-type]
    assert (tmp_path / "model" / "model_card.json").is_file()
