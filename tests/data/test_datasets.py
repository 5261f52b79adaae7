"""The public-data loaders reproduce the figures verified in each folder's SOURCE.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uplift.data.datasets import (
    DATA_ENV,
    HILLSTROM_CONTROL,
    HILLSTROM_FEATURES,
    data_root,
    hillstrom_log,
    load_hillstrom,
    load_ihdp,
)
from uplift.exceptions import ConfigError, SchemaError, UpliftError

# Per-arm figures from hillstrom/SOURCE.md: n, visit rate, conversion rate, mean spend. Rates
# there are printed to 4 decimals of a percent and spend to 4 decimals of a dollar, so we
# compare to half a unit of the last printed digit.
HILLSTROM_ARMS = {
    "No E-Mail": (21_306, 0.106167, 0.005726, 0.6528),
    "Mens E-Mail": (21_307, 0.182757, 0.012531, 1.4226),
    "Womens E-Mail": (21_387, 0.151400, 0.008837, 1.0772),
}
RATE_TOL = 0.5e-6
SPEND_TOL = 0.5e-4

# True ATE mean(mu1 - mu0) per replication, printed to 4 decimals in ihdp/SOURCE.md.
IHDP_TRUE_ATE = {1: 4.0161, 2: 4.0508, 9: 10.4660, 10: 4.5860}
ATE_TOL = 0.5e-4


@pytest.fixture(scope="module")
def hillstrom(shared_data: Path) -> pd.DataFrame:
    return load_hillstrom(shared_data)


def test_hillstrom_per_arm_figures_match_source(hillstrom: pd.DataFrame) -> None:
    assert len(hillstrom) == 64_000
    assert not hillstrom.isna().any().any()
    by_arm = hillstrom.groupby("segment").agg(
        n=("visit", "size"),
        visit=("visit", "mean"),
        conversion=("conversion", "mean"),
        spend=("spend", "mean"),
    )
    assert set(by_arm.index) == set(HILLSTROM_ARMS)
    for arm, (n, visit, conversion, spend) in HILLSTROM_ARMS.items():
        row = by_arm.loc[arm]
        assert row["n"] == n
        assert row["visit"] == pytest.approx(visit, abs=RATE_TOL)
        assert row["conversion"] == pytest.approx(conversion, abs=RATE_TOL)
        assert row["spend"] == pytest.approx(spend, abs=SPEND_TOL)
    assert HILLSTROM_CONTROL in by_arm.index


def test_hillstrom_keeps_published_order(hillstrom: pd.DataFrame) -> None:
    # SOURCE.md: the first row is "10,2) $100 - $200,142.44,...".
    first = hillstrom.iloc[0]
    assert (first["recency"], first["history_segment"], first["history"]) == (
        10,
        "2) $100 - $200",
        142.44,
    )


def test_ihdp_replication_1_matches_source(shared_data: Path) -> None:
    data = load_ihdp(1, shared_data)
    assert len(data.log) == 747
    assert int(data.log["treatment"].sum()) == 139
    assert data.true_cate.mean() == pytest.approx(IHDP_TRUE_ATE[1], abs=ATE_TOL)
    assert data.true_cate.index.equals(data.log.index)


@pytest.mark.parametrize("replication", sorted(IHDP_TRUE_ATE))
def test_ihdp_true_ate_per_replication(shared_data: Path, replication: int) -> None:
    data = load_ihdp(replication, shared_data)
    assert data.replication == replication
    assert data.true_cate.mean() == pytest.approx(IHDP_TRUE_ATE[replication], abs=ATE_TOL)


def test_ihdp_log_holds_no_truth(shared_data: Path) -> None:
    log = load_ihdp(3, shared_data).log
    assert list(log.columns) == ["unit_id", "treatment", "y_factual"] + [
        f"x{i}" for i in range(1, 26)
    ]
    assert set(np.unique(log["treatment"])) == {0, 1}
    # SOURCE.md: x14 is coded {1, 2}, every other x7..x25 is binary.
    assert set(np.unique(log["x14"])) == {1, 2}


def test_ihdp_rejects_unknown_replication(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="replication must be an integer from 1 to 10; got 11"):
        load_ihdp(11, shared_data)
    with pytest.raises(ConfigError, match=r"replication must be an integer from 1 to 10; got 1\.0"):
        load_ihdp(1.0, shared_data)  # type: ignore[arg-type]


def test_missing_folder_names_path_and_fix(tmp_path: Path) -> None:
    with pytest.raises(
        UpliftError, match=r"hillstrom\.csv: public data file not found.*UPLIFT_DATA"
    ):
        load_hillstrom(tmp_path / "nowhere")


def test_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_root() == tmp_path
    assert data_root(tmp_path / "given") == tmp_path / "given"
    with pytest.raises(UpliftError, match=str(tmp_path)):
        load_ihdp(1)


def test_damaged_ihdp_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "ihdp" / "cevae_npci"
    folder.mkdir(parents=True)
    (folder / "ihdp_npci_2.csv").write_text("1,2.0,3.0\n0,1.0,2.0\n")
    with pytest.raises(SchemaError, match=r"ihdp_npci_2\.csv: expected 30 columns .*got 3"):
        load_ihdp(2, tmp_path)


def test_hillstrom_missing_column_is_named(tmp_path: Path) -> None:
    (tmp_path / "hillstrom").mkdir()
    (tmp_path / "hillstrom" / "hillstrom.csv").write_text("recency,segment\n1,No E-Mail\n")
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['history_segment'"):
        load_hillstrom(tmp_path)


def test_hillstrom_log_maps_canonical_columns(shared_data: Path) -> None:
    log = hillstrom_log(shared_data)
    assert log.control == HILLSTROM_CONTROL
    assert log.treatment_arms == ("Mens E-Mail", "Womens E-Mail")
    # conversion is an outcome of the e-mail, never a feature; segment/visit/spend are mapped.
    assert "conversion" not in log.features
    assert set(log.features) == set(HILLSTROM_FEATURES)
    summary = log.summary().set_index("arm")
    for arm, (n, visit, _, spend) in HILLSTROM_ARMS.items():
        assert summary.loc[arm, "orders"] == n
        assert summary.loc[arm, "mean_retained"] == pytest.approx(visit, abs=RATE_TOL)
        assert summary.loc[arm, "mean_revenue"] == pytest.approx(spend, abs=SPEND_TOL)
    assert log.frame["order_id"].is_unique
