"""The project file: read by every command, overridden by flags, guessed by `uplift init`."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer.main

from uplift.cli import app
from uplift.cli.models import LEARNER_NAMES
from uplift.data.guess import guess_project
from uplift.data.log import ColumnMap
from uplift.data.project import Project, load_project
from uplift.data.simulate import simulate
from uplift.exceptions import ConfigError, SchemaError
from uplift.models.catalog import LEARNERS

REPO = Path(__file__).resolve().parents[2]
COMPLETE = """
[log]
map = { arm = "segment", retained = "visit" }
ignore = ["conversion"]
allow = ["newbie"]
control = "No E-Mail"
directions = { history = "up", recency = "down" }

[outcome]
kept = "visited"
lost = "missed visits"
order_value = 12.5
currency = "USD"

[arms]
costs = { "Mens E-Mail" = 0.15 }
vouchers = { "Mens E-Mail" = 1 }
capacities = { "Mens E-Mail" = 5000 }

[policy]
holdout = 0.05
explore = 0.01
budget = 1000

[weekly]
queue_out = "out/queue.parquet"
segments = ["channel"]

[causes]
payment = ["psp_status", "retries"]
"""
# Commands that read a log or orders: each takes the same log options.
LOG_COMMANDS = ("validate", "readout", "train", "evaluate", "predict", "rank", "ingest", "weekly")
LOG_OPTIONS = {"--map", "--ignore", "--control", "--config"}


def test_a_complete_project_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "uplift.toml"
    path.write_text(COMPLETE)
    project = load_project(path)
    assert project.column_map == {"arm": "segment", "retained": "visit"}
    assert project.ignore == ("conversion",)
    assert project.allow == ("newbie",)
    assert project.control == "No E-Mail"
    assert project.directions == {"history": "up", "recency": "down"}
    assert (project.words.kept, project.words.lost) == ("visited", "missed visits")
    assert project.order_value == 12.5
    assert project.currency == "USD"
    assert project.costs == {"Mens E-Mail": 0.15}
    assert project.capacities == {"Mens E-Mail": 5000}
    assert (project.holdout, project.explore, project.budget) == (0.05, 0.01, 1000.0)
    # Relative to the project file, not to the folder a command runs in.
    assert project.queue_out == tmp_path / "out" / "queue.parquet"
    assert project.segments == ("channel",)
    assert project.causes == {"payment": ("psp_status", "retries")}
    assert project.money(1234.5) == "USD 1,234.50"


def test_no_project_file_means_the_defaults(tmp_path: Path) -> None:
    assert load_project(None, cwd=tmp_path) == Project()
    (tmp_path / "uplift.toml").write_text('[log]\ncontrol = "base"\n')
    assert load_project(None, cwd=tmp_path).control == "base"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[logs]\n", r"unknown section \[logs\]"),
        ("[log]\ncontrl = 'x'\n", r"unknown key 'contrl' in \[log\]"),
        ("[policy]\nholdout = 1.5\n", r"\[policy\] holdout must be a share"),
        ("[arms]\ncosts = { a = -1 }\n", r"\[arms\] costs.a must be at least 0"),
        ("[arms]\ncosts = { a = 'x' }\n", r"costs.a must be a number"),
        ("[outcome]\norder_value = 0\n", r"order_value must be positive"),
        ("[log]\nignore = 'conversion'\n", r"ignore must be a list of column names"),
        ("[log\n", r"not a valid TOML file"),
        ("[causes]\nweather = ['rain']\n", r"unknown key 'weather' in \[causes\]"),
        ("[log]\ndirections = { x = 'higher' }\n", r'\[log\] directions must map .* to "up"'),
    ],
)
def test_a_wrong_project_file_is_refused_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "uplift.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_project(path)


def test_a_missing_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--config .*no such file"):
        load_project(tmp_path / "nope.toml")


def test_an_order_value_constant_fills_the_column() -> None:
    frame = simulate(400, weeks=1, seed=1).log.drop(columns=["order_value", "revenue"])
    mapped = ColumnMap(order_value=25.0).apply(frame, "log.csv")
    assert (mapped["order_value"] == 25.0).all()
    with pytest.raises(ConfigError, match=r"order value is given twice"):
        ColumnMap.parse(["order_value=basket"], order_value=3.0)
    with pytest.raises(SchemaError, match=r"has an order_value column and --order-value"):
        ColumnMap(order_value=25.0).apply(simulate(10, weeks=1, seed=1).log, "log.csv")


def _options() -> dict[str, set[str]]:
    command = typer.main.get_command(app)
    commands: dict[str, Any] = command.commands  # type: ignore[attr-defined]
    return {
        name: {
            opt
            for param in cmd.params
            for opt in [*param.opts, *getattr(param, "secondary_opts", [])]
            if opt.startswith("--")
        }
        for name, cmd in commands.items()
    }


def test_every_command_that_reads_a_log_takes_the_same_log_options() -> None:
    options = _options()
    for name in LOG_COMMANDS:
        assert options[name] >= LOG_OPTIONS, (name, LOG_OPTIONS - options[name])


def _flags_in(path: Path) -> set[str]:
    """The --flags that a module's strings name (its messages; not comments or docstrings)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    texts = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]
    return {flag for text in texts for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]+", text)}


def test_every_message_names_only_flags_that_exist() -> None:
    """A flag named in a message exists on some command; one named by the shared reading
    code, which every log-reading command runs, exists on every one of them."""
    options = _options()
    every = set().union(*options.values()) | {"--help", "--debug"}
    package = REPO / "uplift"
    for path in package.rglob("*.py"):
        unknown = _flags_in(path) - every
        # loop/demo.py names the options of the demo script, not of a command.
        if path.name != "demo.py":
            assert not unknown, (path, unknown)
    # The shared modules whose messages reach the user, and the commands that run them.
    guarded = ("validate", "readout", "train", "ingest", "weekly")
    runs = {"log.py": LOG_COMMANDS, "project.py": LOG_COMMANDS, "leaks.py": guarded}
    runs["split.py"] = ("train",)
    for module, commands in runs.items():
        for name in commands:
            missing = _flags_in(package / "data" / module) - options[name] - {"--help"}
            assert not missing, (module, name, missing)


def test_train_help_lists_the_learners() -> None:
    assert LEARNER_NAMES.split(", ") == list(LEARNERS)


# Hillstrom has no order ids: the note that row numbers stand in for them is expected.
@pytest.mark.filterwarnings("default::uplift.exceptions.DataWarning")
def test_init_guesses_hillstrom_and_every_command_reads_it(
    hillstrom_here: Path, tmp_path: Path, uplift_cli: Callable[..., Any]
) -> None:
    log = hillstrom_here
    code, out, err = uplift_cli("init", log)
    assert code == 0, err
    project = load_project(tmp_path / "uplift.toml")
    assert project.column_map == {"arm": "segment", "retained": "visit", "revenue": "spend"}
    assert project.ignore == ("conversion",)
    assert project.control == "No E-Mail"
    assert "guessed arm = segment" in out
    code, _, err = uplift_cli("init", log)
    assert code == 2
    assert "--force" in err
    code, out, err = uplift_cli("validate", log)
    assert code == 0, err
    assert "64,000 orders, 3 arms" in out
    assert "conversion" not in out.split("features")[1]
    # A flag wins over the project file.
    code, _, err = uplift_cli("validate", log, "--control", "Mens E-Mail")
    assert code == 0, err


def test_init_guesses_a_promotion_test_with_yes_no_arms() -> None:
    frame = pd.DataFrame(
        {
            "ID": range(1, 401),
            "Promotion": ["Yes", "No"] * 200,
            "Purchase": [0, 1, 0, 0] * 100,
            "V1": [1.0, 2.0] * 200,
        }
    )
    guess = guess_project(frame)
    assert guess.column_map == {"order_id": "ID", "arm": "Promotion", "retained": "Purchase"}
    assert guess.control == "No"


def test_train_takes_directions_from_the_project_and_the_flags(
    tmp_path: Path, uplift_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    log = tmp_path / "log.parquet"
    simulate(3_000, weeks=2, seed=4).log.to_parquet(log)
    config = tmp_path / "uplift.toml"
    config.write_text('[log]\ndirections = { order_edits = "down", dispatch_delay_days = "up" }\n')
    model = tmp_path / "model"
    code, _, err = uplift_cli(
        "train", log, "--model-dir", model, "--config", config, "--learner", "s_lgbm",
        "--no-validate", "--direction", "dispatch_delay_days=down",
    )  # fmt: skip
    assert code == 0, err
    card = json.loads((model / "model_card.json").read_text())
    assert card["training"]["directions"] == {"order_edits": "down", "dispatch_delay_days": "down"}
    for flag, message in [
        ("stock_confidence=higher", "direction stock_confidence=higher: a direction is up or down"),
        ("stock_confidence", "--direction expects key=value"),
        ("category=up", "column 'category' of .* is not a number"),
    ]:
        code, out, err = uplift_cli(
            "train", log, "--model-dir", tmp_path / "other", "--direction", flag
        )
        assert code == 2, out
        assert re.search(message, err), err
        assert len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "other").exists()
