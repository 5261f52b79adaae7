"""Holdout design: power against simulation, duration, design.toml, hash assignment, SRM."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from uplift.exceptions import ConfigError, SchemaError
from uplift.experiment.assignment import assign_arms, hash_unit
from uplift.experiment.design import Design, plan_design
from uplift.experiment.power import comparison_alpha, effect_from_size, effect_size
from uplift.experiment.readout import difference_in_means
from uplift.experiment.sample_ratio import check_sample_ratio

UPLIFT = Path(sys.executable).with_name("uplift")
# Monte Carlo replicates of a test; with 4,000 the standard error of a rate near 0.8 is 0.0063.
REPLICATES = 4_000


def _design(**overrides: object) -> Design:
    args: dict[str, object] = {
        "name": "t",
        "treatment_arms": ["reassurance", "expedite"],
        "baseline_cancel_rate": 0.075,
        "mde": 0.01,
        "daily_orders": 4000,
        "holdout": 0.2,
        "start_date": date(2026, 10, 5),
    }
    args.update(overrides)
    return plan_design(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Power, sample size, duration


def test_designed_sample_size_reaches_the_designed_power_in_simulation() -> None:
    # Binomial draws at the designed sizes, read out with the readout's own Welch test at the
    # per-arm level. Tolerance: 3 Monte Carlo SE (0.019) plus 0.01 for the arcsine (Cohen's h)
    # approximation the power analysis makes of the Wald test.
    design = _design()
    rng = np.random.default_rng(1)
    p0 = design.baseline_cancel_rate
    n0, n1 = design.n_control, design.n_per_arm
    c0 = rng.binomial(n0, p0, REPLICATES) / n0
    c1 = rng.binomial(n1, p0 - design.mde, REPLICATES) / n1
    welch = difference_in_means(
        c1, c1 * (1 - c1) / (n1 - 1), n1, c0, c0 * (1 - c0) / (n0 - 1), n0, alpha=0.05
    )
    rejected = welch["p_value"] < design.comparison_alpha
    assert abs(rejected.mean() - design.power) < 0.029


def test_revenue_sample_size_matches_the_textbook_formula() -> None:
    # n per group = 2 (z_{1-a/2} + z_{power})^2 sd^2 / mde^2 for equal groups and one arm.
    design = _design(
        treatment_arms=["a"], holdout=None, primary_metric="revenue_per_order", mde=2.0,
        revenue_sd=40.0,
    )  # fmt: skip
    expected = 2 * (norm.ppf(0.975) + norm.ppf(0.8)) ** 2 * 40.0**2 / 2.0**2
    assert design.n_control == int(np.ceil(expected))
    assert design.n_per_arm == design.n_control


def test_holm_sizes_each_comparison_at_alpha_over_arms() -> None:
    one, three = _design(treatment_arms=["a"]), _design(treatment_arms=["a", "b", "c"])
    assert three.comparison_alpha == pytest.approx(0.05 / 3)
    assert comparison_alpha(0.05, 3, "none") == 0.05
    assert three.n_control > one.n_control


def test_duration_covers_the_control_arm_at_its_share_of_daily_orders() -> None:
    design = _design()
    assert design.days == int(np.ceil(design.n_control / (4000 * 0.2)))
    assert (design.days - 1) * 4000 * 0.2 < design.n_control <= design.days * 4000 * 0.2
    assert design.n_per_arm == int(np.ceil(design.n_control * 0.4 / 0.2))
    assert (design.end_date - design.start_date).days == design.days


def test_detectable_effect_inverts_the_sample_size() -> None:
    design = _design()
    h = effect_size("cancel_rate", 0.01, baseline=0.075)
    assert effect_from_size("cancel_rate", h, baseline=0.075) == pytest.approx(0.01, rel=1e-12)
    effects = design.detectable_effects()
    # The rounded-up duration buys a little more than the designed sample: a smaller MDE.
    assert 0.0095 < effects.loc[0, "mde"] <= 0.01
    assert effects.loc[0, "n_control"] >= design.n_control


def test_default_holdout_splits_orders_equally() -> None:
    design = _design(holdout=None, treatment_arms=["a", "b", "c"])
    assert design.allocation == pytest.approx({"control": 0.25, "a": 0.25, "b": 0.25, "c": 0.25})


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"mde": 0.1}, "must be below the baseline"),
        ({"holdout": 1.0}, "--holdout must lie strictly between 0 and 1"),
        ({"alpha": 0.7}, "--alpha must be in"),
        ({"treatment_arms": []}, "at least one treatment arm"),
        ({"treatment_arms": ["a", "a"]}, "must be distinct"),
        ({"costs": {"nope": 1.0}}, "--cost names arm"),
        ({"primary_metric": "revenue_per_order"}, "standard deviation of revenue"),
        ({"correction": "fdr"}, "correction must be one of"),
    ],
)
def test_plan_design_rejects_bad_input(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _design(**overrides)


# --------------------------------------------------------------------------------------------
# design.toml


def test_design_toml_round_trips(tmp_path: Path) -> None:
    design = _design(costs={"expedite": 5.0}, revenue_sd=55.5, stratify="category", salt='a"b')
    assert Design.read(design.write(tmp_path / "d" / "design.toml")) == design


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.replace("mde = 0.01", 'mde = "big"'), "mde must be a number"),
        (lambda t: t.replace('"control" = 0.2', '"control" = 0.3'), "sum to 1"),
        (lambda t: t.replace("salt =", "pepper ="), "missing key"),
        (lambda t: t.replace("[allocation]", "[allocation"), "not valid TOML"),
    ],
)
def test_design_read_names_the_problem(tmp_path: Path, edit: object, match: str) -> None:
    path = _design().write(tmp_path / "design.toml")
    path.write_text(edit(path.read_text()))  # type: ignore[operator]
    with pytest.raises(ConfigError, match=match):
        Design.read(path)


# --------------------------------------------------------------------------------------------
# Assignment


def test_hash_unit_is_md5_of_salt_and_order_id() -> None:
    ids = pd.Series([1, 2, 30_000_000_000, "A-17", "ünï"], dtype=object)
    expected = [int(hashlib.md5(f"s1:{i}".encode()).hexdigest()[:13], 16) / 16**13 for i in ids]
    assert hash_unit(ids, "s1").tolist() == expected


def test_assignment_is_deterministic_and_independent_of_row_order() -> None:
    design = _design()
    orders = pd.DataFrame({"order_id": np.arange(5_000), "x": np.arange(5_000) % 7})
    first = assign_arms(orders, design).set_index("order_id")["arm"]
    shuffled = orders.sample(frac=1.0, random_state=np.random.default_rng(3))
    again = assign_arms(shuffled[["x", "order_id"]], design).set_index("order_id")["arm"]
    assert again.reindex(first.index).equals(first)
    # Integer and text ids hash alike, so a CSV read either way gives the same arms.
    as_text = assign_arms(orders.assign(order_id=orders["order_id"].astype(str)), design)
    assert (as_text["arm"].to_numpy() == first.to_numpy()).all()


def test_assignment_changes_with_the_salt() -> None:
    orders = pd.DataFrame({"order_id": np.arange(2_000)})
    a = assign_arms(orders, _design(salt="one"))["arm"]
    b = assign_arms(orders, _design(salt="two"))["arm"]
    # Independent assignments agree with probability sum(share^2) = 0.36; never near 1.
    assert (a == b).mean() < 0.45


def test_assignment_respects_the_allocation_and_writes_propensities() -> None:
    design = _design()
    n = 200_000
    assigned = assign_arms(pd.DataFrame({"order_id": np.arange(n)}), design)
    shares = assigned["arm"].value_counts(normalize=True)
    for arm, share in design.allocation.items():
        # 4 binomial standard errors: a false alarm over three arms has probability ~2e-4.
        assert abs(shares[arm] - share) < 4 * np.sqrt(share * (1 - share) / n)
    assert (assigned["propensity"] == assigned["arm"].map(design.allocation)).all()


def test_stratified_assignment_splits_every_stratum_exactly() -> None:
    design = _design()
    rng = np.random.default_rng(5)
    orders = pd.DataFrame(
        {"order_id": np.arange(3_001), "category": rng.choice(["a", "b", "c"], 3_001)}
    )
    assigned = assign_arms(orders, design, stratify="category")
    counts = assigned.groupby(["category", "arm"]).size().unstack()
    sizes = orders["category"].value_counts()
    for arm, share in design.allocation.items():
        assert (np.abs(counts[arm] - share * sizes.reindex(counts.index)) <= 1).all()
    repeat = assign_arms(orders.iloc[::-1], design, stratify="category").sort_index()
    assert repeat["arm"].equals(assigned["arm"])


@pytest.mark.parametrize(
    ("orders", "match"),
    [
        (pd.DataFrame({"id": [1, 2]}), "no order_id column"),
        (pd.DataFrame({"order_id": [1, 1, 2]}), r"missing or duplicated in 2 row\(s\): 1, 2"),
        (pd.DataFrame({"order_id": [1, 2], "arm": ["a", "b"]}), "already have an arm"),
    ],
)
def test_assignment_rejects_bad_orders(orders: pd.DataFrame, match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        assign_arms(orders, _design())


# --------------------------------------------------------------------------------------------
# Sample-ratio mismatch


def test_srm_statistic_is_pearsons_chi_square() -> None:
    check = check_sample_ratio({"control": 480, "a": 520}, {"control": 0.5, "a": 0.5})
    assert check.statistic == pytest.approx((20**2 + 20**2) / 500)
    assert check.p_value == pytest.approx(2 * norm.sf(np.sqrt(check.statistic)))
    assert check.passed


def test_srm_rejects_arms_outside_the_allocation() -> None:
    with pytest.raises(SchemaError, match=r"arm\(s\) b are in the log but not in the allocation"):
        check_sample_ratio({"control": 10, "b": 5}, {"control": 0.5, "a": 0.5})


@pytest.mark.parametrize(
    ("allocation", "skewed"),
    [
        ({"control": 0.5, "a": 0.5}, {"control": 0.49, "a": 0.51}),
        # The order world's 20% holdout with five arms; one point of control leaks to an arm.
        (
            {"control": 0.2, **{f"a{i}": 0.16 for i in range(5)}},
            {"control": 0.19, "a0": 0.17, **{f"a{i}": 0.16 for i in range(1, 5)}},
        ),
    ],
)
def test_srm_detects_a_one_point_skew_at_100k_orders(
    allocation: dict[str, float], skewed: dict[str, float]
) -> None:
    # "1% skew": one percentage point of orders lands in the wrong arm. The issue asks for
    # detection in at least 80% of 500 runs (one SE of that rate: 0.018).
    rng = np.random.default_rng(7)
    draws = rng.multinomial(100_000, list(skewed.values()), size=500)
    detected = [
        not check_sample_ratio(dict(zip(skewed, row, strict=True)), allocation).passed
        for row in draws
    ]
    assert np.mean(detected) >= 0.8
    # Without skew the check rarely fires: 0.5 alarms expected in 500 runs; P(5 or more) < 2e-4.
    clean = rng.multinomial(100_000, list(allocation.values()), size=500)
    alarms = [
        not check_sample_ratio(dict(zip(allocation, row, strict=True)), allocation).passed
        for row in clean
    ]
    assert np.sum(alarms) <= 4


# --------------------------------------------------------------------------------------------
# Command line


def test_cli_design_writes_a_design_that_assign_reads(
    uplift_cli: Callable[..., Any], tmp_path: Path
) -> None:
    args = ["design", "--baseline-cancel-rate", "0.075", "--mde", "0.01", "--arm", "reassurance"]
    args += ["--arm", "expedite", "--daily-orders", "4000", "--holdout", "0.2", "--name", "w40"]
    args += ["--out-dir", str(tmp_path), "--start-date", "2026-10-05", "--cost", "expedite=5"]
    args += ["--json", str(tmp_path / "design.json")]
    result = uplift_cli(*args)
    assert result.exit_code == 0, result.output
    design = Design.read(tmp_path / "w40" / "design.toml")
    assert design == _design(costs={"expedite": 5.0}, name="w40")
    figures = json.loads((tmp_path / "design.json").read_text())
    assert figures["n_control"] == design.n_control
    assert figures["days"] == design.days
    assert f"{design.n_control:,}" in result.output

    orders = tmp_path / "orders.csv"
    pd.DataFrame({"order_id": np.arange(1_000), "v": 1.0}).to_csv(orders, index=False)
    out = tmp_path / "assigned.parquet"
    result = uplift_cli(
        "assign", orders, "--design", tmp_path / "w40" / "design.toml", "--out", out
    )
    assert result.exit_code == 0, result.output
    assigned = pd.read_parquet(out)
    expected = assign_arms(pd.read_csv(orders), design)
    pd.testing.assert_frame_equal(assigned, expected)


def test_cli_design_refuses_to_overwrite_a_running_test(
    uplift_cli: Callable[..., Any], tmp_path: Path
) -> None:
    args = ["design", "--baseline-cancel-rate", "0.075", "--mde", "0.01"]
    args += ["--arms", "2", "--daily-orders", "4000", "--out-dir", str(tmp_path)]
    assert uplift_cli(*args).exit_code == 0
    second = subprocess.run([str(UPLIFT), *args], capture_output=True, text=True, check=False)
    assert second.returncode == 2
    assert "design.toml exists" in second.stderr
    assert "Traceback" not in second.stderr
