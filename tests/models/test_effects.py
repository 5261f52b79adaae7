"""The Effects result: one naming of the file's columns, the control arm in the file, net value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from uplift.data.files import table_output, write_outputs
from uplift.exceptions import ConfigError, SchemaError
from uplift.models import make_learner
from uplift.models.catalog import LEARNERS
from uplift.models.effects import Effects, best_arm, concat_effects, read_effects
from uplift.models.learners import DRLearner, SLearner, TLearner


def effects(control: str = "none") -> Effects:
    index = pd.Index([10, 11, 12])
    return Effects(
        control,
        ("a", "b"),
        pd.DataFrame({"a": [0.1, -0.2, 0.0], "b": [0.3, -0.1, 0.0]}, index=index),
        pd.DataFrame({"a": [5.0, 1.0, 3.0], "b": [4.0, 0.5, 9.0]}, index=index),
        pd.Series([0.5, 0.8, 0.9], index=index),
        pd.Series([7, 8, 9], index=index),
    )


def test_the_file_columns_are_named_once_and_read_back() -> None:
    frame = effects().to_frame()
    assert list(frame.columns) == [
        "order_id",
        "retained_uplift_a",
        "retained_uplift_b",
        "revenue_uplift_a",
        "revenue_uplift_b",
        "retained_base",
    ]
    back = Effects.from_frame(frame, control="none")
    pd.testing.assert_frame_equal(back.to_frame(), frame)
    assert back.arms == ("none", "a", "b")


def test_best_arm_is_control_unless_some_value_is_positive() -> None:
    values = np.array([[0.1, 0.3], [-0.2, -0.1], [0.0, 0.0]])
    assert best_arm(values, ["a", "b"], "none").tolist() == ["b", "none", "none"]
    assert effects().best_arm(outcome="retained").tolist() == ["b", "none", "none"]
    # Net of costs: a = 3, -1, 1; b = -1.5, -5, 3.5.
    assert effects().best_arm({"a": 2.0, "b": 5.5}).tolist() == ["a", "none", "b"]


def test_a_voucher_is_charged_on_the_predicted_retention_level() -> None:
    net = effects().net_value({"a": 1.0}, vouchers={"a": 5.0})
    # cost = 1 + 5 * (base + uplift): 1 + 5 * 0.6, 1 + 5 * 0.6, 1 + 5 * 0.9.
    np.testing.assert_allclose(net.cost[:, 0], [4.0, 4.0, 5.5])


def test_outcome_levels_are_base_plus_uplift() -> None:
    levels = effects().outcomes("revenue", np.array([10.0, 20.0, 30.0]))
    np.testing.assert_allclose(levels["none"], [5.0, 16.0, 27.0])
    np.testing.assert_allclose(levels["b"], [9.0, 16.5, 36.0])


def test_subsets_and_concatenation_keep_every_part() -> None:
    whole = effects()
    parts = [whole.subset(np.array([True, False, True])), whole.subset(np.array([0, 1, 0]))]
    joined = concat_effects(parts)
    assert joined.order_ids is not None
    assert joined.order_ids.tolist() == [7, 9, 8]
    assert joined.uplift("revenue")["b"].tolist() == [4.0, 9.0, 0.5]


def test_inconsistent_effects_are_refused() -> None:
    with pytest.raises(SchemaError, match="not the treatment arms"):
        Effects("none", ("a",), pd.DataFrame({"b": [0.1]}), None)
    with pytest.raises(SchemaError, match="need a retained or a revenue uplift"):
        Effects("none", ("a",), None, None)
    with pytest.raises(SchemaError, match="no retained_uplift_<arm> or revenue_uplift_<arm>"):
        Effects.from_frame(pd.DataFrame({"order_id": [1]}))
    with pytest.raises(SchemaError, match="no revenue uplift"):
        Effects("none", ("a",), pd.DataFrame({"a": [0.1]}), None).net_value()


def test_a_parquet_file_records_its_control_arm(tmp_path: Path) -> None:
    path = tmp_path / "effects.parquet"
    whole = effects(control="no action")
    write_outputs(table_output(whole.to_frame(), path, whole.metadata()))
    frame = pd.read_parquet(path)
    assert read_effects(path, frame, control=None).control == "no action"
    with pytest.raises(ConfigError, match="control arm is 'no action', not 'control'"):
        read_effects(path, frame, control="control")


def test_a_file_of_the_earlier_format_reads_with_the_control_named(tmp_path: Path) -> None:
    path = tmp_path / "old.parquet"
    effects().to_frame().to_parquet(path, index=False)  # no metadata, as before
    frame = pd.read_parquet(path)
    assert read_effects(path, frame, control=None).control == "control"
    assert read_effects(path, frame, control="none").control == "none"


def test_rank_reads_the_control_arm_from_the_effects_file(
    uplift_cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    orders = pd.DataFrame({"order_id": [7, 8, 9], "x": [1.0, 2.0, 3.0]})
    orders.to_csv(tmp_path / "orders.csv", index=False)
    whole = effects(control="no action")
    write_outputs(table_output(whole.to_frame(), tmp_path / "e.parquet", whole.metadata()))
    whole.to_frame().to_csv(tmp_path / "e.csv", index=False)

    def rank(effects_file: str, *extra: str) -> Any:
        # Most orders held out on control: the queue then names the control arm.
        args = ["rank", "orders.csv", "--effects", effects_file, "--out", "q.csv", *extra]
        return uplift_cli(*args, "--holdout", "0.9")

    done = rank("e.parquet")
    assert done.exit_code == 0, done.stderr
    assert "no action" in set(pd.read_csv(tmp_path / "q.csv")["arm"])
    unnamed = rank("e.csv")  # a CSV file cannot name its control arm
    assert unnamed.exit_code == 0, unnamed.stderr
    assert "control" in set(pd.read_csv(tmp_path / "q.csv")["arm"])
    named = rank("e.csv", "--control", "no action")
    assert named.exit_code == 0, named.stderr
    assert "control" not in set(pd.read_csv(tmp_path / "q.csv")["arm"])


@pytest.mark.parametrize("cls", [TLearner, SLearner, DRLearner])
def test_learner_defaults_are_the_catalogs_settings(cls: type) -> None:
    name = {TLearner: "t_lgbm", SLearner: "s_lgbm", DRLearner: "dr_lgbm"}[cls]
    assert name in LEARNERS
    assert cls().get_params() == make_learner(name, seed=0).get_params()
