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


# --------------------------------------------------------------------------------------------
# Every figure names its source


ROOT = README.parent
# The README's sections of measured figures, and the benchmark results that are superseded.
MEASURED_SECTIONS = ("## The order world", "## What is measured, and where")
SUPERSEDED = {"order.md", "order-easy.md", "speed.md"}
# A measured share: 89%, 95.0-99.0%, 1,000%; not a setting (95% interval, 10% holdout).
FIGURE = re.compile(r"\d%(?! (?:intervals?|holdout|exploration|random))")
SOURCE = re.compile(r"`(?:python )?((?:tests|benchmarks)/[^`\s]+)")
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start : end if end >= 0 else len(text)]


def blocks(text: str) -> list[str]:
    """Paragraphs and tables, without code blocks."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]


def test_every_figure_in_the_measured_sections_names_its_test_or_benchmark() -> None:
    # A paragraph with a measured share names the test or benchmark (or its results file)
    # itself; a table may name it in its caption (the block before) or its note (after), and
    # a table with a `test` column names it on every row.
    missing = []
    for heading in MEASURED_SECTIONS:
        parts = blocks(section(README.read_text(), heading))
        for i, block in enumerate(parts):
            if not FIGURE.search(block):
                continue
            if block.startswith("|"):
                rows = [r.strip("|").split(" | ") for r in block.splitlines()]
                if "test" in [c.strip() for c in rows[0]]:
                    column = [c.strip() for c in rows[0]].index("test")
                    missing += [r[0] for r in rows[2:] if not SOURCE.search(r[column])]
                    continue
                near = parts[max(i - 1, 0) : i + 2]
            else:
                near = [block]
            if not any(SOURCE.search(b) for b in near):
                missing.append(block[:80])
    assert missing == []


def test_every_source_the_readmes_name_exists() -> None:
    named = SOURCE.findall(README.read_text()) + [
        f"benchmarks/{name}" for name in re.findall(r"`(results/[^`\s]+)`", _bench_readme())
    ]
    assert named
    named = [path.rstrip(".,;:)") for path in named if "<" not in path]  # not a placeholder
    missing = sorted({path for path in named if not (ROOT / path).exists()})
    assert missing == []


def _bench_readme() -> str:
    return (ROOT / "benchmarks" / "README.md").read_text()


def _matches(quoted: str, numbers: list[float]) -> bool:
    """``quoted`` is one of ``numbers`` rounded to its decimals (or a share of one, in %)."""
    value, tolerance = float(quoted), 0.5 * 10.0 ** -len(quoted.split(".")[1]) + 1e-12
    return any(abs(n - value) <= tolerance or abs(100 * n - value) <= tolerance for n in numbers)


def test_every_headline_of_the_benchmarks_is_in_a_current_results_file() -> None:
    text = section(_bench_readme(), "## Results")
    bullets = re.findall(r"^- .*?(?=^- |\Z)", text, flags=re.S | re.M)
    assert bullets
    wrong = []
    for bullet in bullets:
        files = re.findall(r"`results/([\w.-]+)`", bullet)
        assert files, bullet[:60]
        assert not set(files) & SUPERSEDED, bullet[:60]
        numbers = [
            float(n.replace(",", ""))
            for name in files
            for n in NUMBER.findall((ROOT / "benchmarks" / "results" / name).read_text())
        ]
        wrong += [(bullet[:30], q) for q in DECIMAL.findall(bullet) if not _matches(q, numbers)]
    assert wrong == []
