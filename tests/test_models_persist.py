"""Model directories (round trip, checksum, version) and the train / evaluate / predict commands."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uplift.exceptions import ConfigError, ModelLoadError
from uplift.log import ExperimentLog
from uplift.models import ModelVersionWarning, load_model, read_card, save_model, train_uplift
from uplift.simulate import pending_orders, simulate


@pytest.fixture(scope="module")
def log() -> ExperimentLog:
    return ExperimentLog.from_frame(simulate(3_000, weeks=2, seed=8).log)


@pytest.fixture(scope="module")
def saved(log: ExperimentLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = train_uplift(log, learner="t_lgbm", costs={"expedite": 5.0}, validate=True)
    return save_model(model, tmp_path_factory.mktemp("models") / "m")


def test_round_trip_predicts_the_same(log: ExperimentLog, saved: Path) -> None:
    model = load_model(saved)
    again = train_uplift(log, learner="t_lgbm", costs={"expedite": 5.0})
    pd.testing.assert_frame_equal(
        model.predict_effects(log.frame), again.predict_effects(log.frame)
    )


def test_model_card_describes_the_model(log: ExperimentLog, saved: Path) -> None:
    card = read_card(saved)
    assert card["learner"] == "t_lgbm"
    assert card["arms"] == list(log.arms)
    assert card["control"] == "control"
    assert card["features"] == list(log.features)
    assert card["training"]["orders"] == len(log)
    assert len(card["training"]["data_hash"]) == 64
    assert card["training"]["costs"] == {"expedite": 5.0}
    assert [c["learner"] for c in card["selection"]["candidates"]] == ["t_lgbm"]
    assert {"numpy", "pandas", "lightgbm"} <= set(card["package_versions"])
    assert card["created_at"]


def _copy(saved: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("model.pkl", "model_card.json"):
        (target / name).write_bytes((saved / name).read_bytes())
    return target


def test_tampered_model_is_refused_before_unpickling(saved: Path, tmp_path: Path) -> None:
    copy = _copy(saved, tmp_path / "m")
    with (copy / "model.pkl").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelLoadError, match="checksum does not match the model card"):
        load_model(copy)


def test_missing_files_are_load_errors(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no model_card\.json"):
        load_model(tmp_path)
    copy = _copy(saved, tmp_path / "m")
    (copy / "model.pkl").unlink()
    with pytest.raises(ModelLoadError, match=r"no model\.pkl"):
        load_model(copy)
    (copy / "model_card.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="damaged model card"):
        load_model(copy)


def test_other_package_version_warns(saved: Path, tmp_path: Path) -> None:
    copy = _copy(saved, tmp_path / "m")
    card = json.loads((copy / "model_card.json").read_text())
    card["package_version"] = "0.0.1"
    (copy / "model_card.json").write_text(json.dumps(card))
    with pytest.warns(ModelVersionWarning, match="saved by uplift 0.0.1"):
        load_model(copy)


def test_failed_save_leaves_nothing(
    log: ExperimentLog, saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_model(saved)

    def broken(*args: object, **kwargs: object) -> bytes:
        raise OSError("disk full")

    monkeypatch.setattr(pickle, "dumps", broken)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_directory_that_is_not_a_model(saved: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="exists and is not a model directory"):
        save_model(load_model(saved), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _uplift(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uplift", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    world = simulate(3_000, weeks=2, seed=9)
    world.log.to_csv(folder / "log.csv", index=False)
    pending_orders(world.log).to_parquet(folder / "orders.parquet")
    return folder


def test_cli_train_evaluate_predict(files: Path) -> None:
    model_dir = files / "model"
    train = _uplift(
        "train", files / "log.csv", "--model-dir", model_dir, "--learner", "s_lgbm",
        "--cost", "expedite=5", "--json", files / "card.json",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "trained s_lgbm on 3,000 orders" in train.stdout
    card = json.loads((files / "card.json").read_text())
    assert card["learner"] == "s_lgbm"
    assert card["selection"]["candidates"][0]["policy_value"] > 0

    evaluate = _uplift(
        "evaluate", files / "log.csv", "--model-dir", model_dir, "--json", files / "eval.json"
    )
    assert evaluate.returncode == 0, evaluate.stderr
    result = json.loads((files / "eval.json").read_text())
    assert {row["arm"] for row in result["by_arm"]} == set(card["treatment_arms"])
    assert {row["estimator"] for row in result["policies"]} == {"ipw", "snipw", "dr"}
    assert result["best_single_arm"].startswith("treat_all_")
    assert result["costs"] == {"expedite": 5.0}  # the training costs by default
    assert result["in_sample"] is True
    assert "trained on; its scores are optimistic" in evaluate.stdout

    out = files / "effects.csv"
    predict = _uplift("predict", files / "orders.parquet", "--model-dir", model_dir, "--out", out)
    assert predict.returncode == 0, predict.stderr
    effects = pd.read_csv(out)
    arms = card["treatment_arms"]
    assert list(effects.columns) == [
        "order_id",
        *(f"retained_uplift_{a}" for a in arms),
        *(f"revenue_uplift_{a}" for a in arms),
        "retained_base",
    ]
    assert len(effects) == 3_000
    assert np.isfinite(effects.to_numpy()).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "missing.csv", "--model-dir", "{dir}/m"), "file not found"),
        (("train", "{dir}/log.csv", "--model-dir", "{dir}/m", "--learner", "best"),
         "learner must be one of"),
        (("train", "{dir}/log.csv", "--model-dir", "{dir}/m", "--cost", "teleport=1"),
         r"costs name arm\(s\) teleport"),
        (("predict", "{dir}/orders.parquet", "--model-dir", "{dir}/none", "--out", "{dir}/e.csv"),
         "no model_card.json"),
        (("evaluate", "{dir}/log.csv", "--model-dir", "{dir}/none"), "no model_card.json"),
    ],
)  # fmt: skip
def test_cli_bad_input_exits_2_without_output(files: Path, args: tuple, message: str) -> None:
    result = _uplift(*(a.format(dir=files) for a in args))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert re.search(message, result.stderr), result.stderr
    assert not (files / "m").exists()
    assert not (files / "e.csv").exists()
