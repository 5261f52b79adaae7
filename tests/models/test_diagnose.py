"""Diagnose: reasons and segment tables, checked against the order world's true uplift.

The effects fed in are the simulator's TRUE retained uplift, so the tests check the
explanation machinery, not the quality of any model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from uplift.data.simulate import FEATURES, simulate, true_uplift
from uplift.exceptions import ConfigError, SchemaError
from uplift.models import diagnose
from uplift.models.diagnose import (
    ArmReasons,
    explain_arms,
    segment_table,
)

ORDERS = 20_000
FRICTION = ("pending", "retry_failed")
# Payment rescue is the only arm acting on payment friction (-1.1 x friction in log-odds, the
# largest single effect in the world), so for nearly every pending / failed-payment order it is
# the true best arm. A depth-3 tree that found the cause must send >= 90% of those orders to it;
# on seeds 0-4 the share was 0.97-1.00, so 0.90 fails only if payment status is not used.
FRICTION_SHARE = 0.90
# A depth-3 tree cannot copy a 6-arm policy exactly; it must still keep most of the true effect
# (measured 0.91-0.93 on seeds 0-4). Below 0.8 the weighting or the tree would be broken.
EFFECT_KEPT = 0.80


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    sim = simulate(ORDERS, weeks=2, seed=7, world="easy")
    features = sim.log[[*FEATURES, "order_value"]]
    return features, true_uplift(sim.truth)


@pytest.fixture(scope="module")
def reasons(world: tuple[pd.DataFrame, pd.DataFrame]) -> ArmReasons:
    features, effects = world
    return explain_arms(features, effects, max_depth=3)


def test_payment_rescue_is_explained_by_payment_status(
    world: tuple[pd.DataFrame, pd.DataFrame], reasons: ArmReasons
) -> None:
    features, _ = world
    friction = features["payment_status"].isin(FRICTION).to_numpy()
    orders = reasons.orders
    assert (orders["tree_arm"][friction] == "payment_rescue").mean() >= FRICTION_SHARE
    # Away from payment friction, payment rescue has no effect at all, so it is never chosen.
    assert not (orders["arm"][~friction] == "payment_rescue").any()
    rescue_rules = reasons.rules[reasons.rules["arm"] == "payment_rescue"]
    assert len(rescue_rules) > 0
    # Every payment-rescue reason names the payment status (the words depend on the split:
    # "is pending or retry failed", or "is not confirmed" beside the payment method).
    assert rescue_rules["rule"].str.contains("payment status is").all()
    rescued = orders["reason"][(orders["arm"] == "payment_rescue") & orders["matches_model"]]
    assert len(rescued) >= FRICTION_SHARE * (orders["arm"] == "payment_rescue").sum()
    assert rescued.str.contains(r"payment status is .*: payment rescue$").all()
    # And the rescue leaves hold (almost) only payment-friction orders.
    in_rescue_leaf = (orders["tree_arm"] == "payment_rescue").to_numpy()
    assert friction[in_rescue_leaf].mean() >= FRICTION_SHARE


def test_reasons_keep_most_of_the_effect(reasons: ArmReasons) -> None:
    assert reasons.effect_kept >= EFFECT_KEPT
    assert reasons.effect_kept <= 1.0 + 1e-12  # the true best arms cannot be beaten
    assert reasons.fidelity == pytest.approx(reasons.orders["matches_model"].mean())
    assert reasons.rules["orders"].sum() == ORDERS
    assert reasons.rules["share"].sum() == pytest.approx(1.0)
    assert reasons.orders["reason"].notna().all()


def test_disagreeing_orders_name_both_arms(reasons: ArmReasons) -> None:
    orders = reasons.orders
    differ = orders[~orders["matches_model"]]
    assert len(differ) > 0
    assert differ["reason"].str.contains(": usually .+, here ").all()
    assert not orders.loc[orders["matches_model"], "reason"].str.contains("usually").any()


def test_agent_call_harms_loyal_customers(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    # The world makes an agent call annoy customers with >= 5 prior orders (+0.7 log-odds).
    features, effects = world
    table = segment_table(features, effects)
    harms = table[(table["arm"] == "agent_call") & (table["direction"] == "harms")]
    worst = harms.iloc[0]
    assert worst["feature"] in ("prior_orders", "customer_tenure")
    assert worst["mean_effect"] < 0
    loyal = features["prior_orders"] >= 5
    assert effects.loc[loyal, "agent_call"].mean() < 0


def test_segment_table_values_by_hand(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    features, effects = world
    table = segment_table(features[["payment_status"]], effects, top=2)
    rescue = table[table["arm"] == "payment_rescue"]
    # Failed retries carry more friction (1.6) than pending payments (1.0): the top two.
    helps = rescue[rescue["direction"] == "helps"]
    assert list(helps["segment"]) == ["retry_failed", "pending"]
    failed = features["payment_status"] == "retry_failed"
    assert helps["orders"].iloc[0] == failed.sum()
    assert helps["mean_effect"].iloc[0] == pytest.approx(
        effects.loc[failed, "payment_rescue"].mean(), rel=1e-12
    )
    # True uplift of payment rescue is never negative, so it harms nowhere, and one row says so.
    (nowhere,) = rescue[rescue["direction"] == "harms"].itertuples(index=False)
    assert (nowhere.rank, nowhere.orders, nowhere.segment) == (0, 0, "")
    assert nowhere.note == (
        f"no segment of >= {ORDERS // 100} orders has a negative mean effect, "
        "and no order has a negative effect"
    )
    assert (helps["note"] == "").all()
    assert list(helps["rank"]) == [1, 2]
    assert (
        (table["arm_mean_effect"][table["arm"] == "payment_rescue"])
        .eq(effects["payment_rescue"].mean())
        .all()
    )


def test_exact_reasons_on_a_separable_queue() -> None:
    features = pd.DataFrame(
        {
            "payment_status": ["pending", "confirmed"] * 50,
            "dispatch_delay_days": np.tile(np.arange(5), 20),
        }
    )
    pending = (features["payment_status"] == "pending").to_numpy()
    delayed = (features["dispatch_delay_days"] >= 2).to_numpy()
    effects = pd.DataFrame(
        {
            "payment_rescue": np.where(pending, 0.2, 0.0),
            "expedite": np.where(~pending & delayed, 0.1, -0.01),
        }
    )
    result = explain_arms(features, effects, max_depth=2, min_leaf_share=0.05)
    assert result.fidelity == 1.0
    assert result.effect_kept == pytest.approx(1.0)
    assert set(result.rules["rule"] + " -> " + result.rules["arm"]) == {
        "payment status is pending -> payment_rescue",
        "payment status is confirmed, dispatch delay days >= 2 -> expedite",
        "payment status is confirmed, dispatch delay days <= 1 -> control",
    }
    assert result.orders["reason"].iloc[0] == "payment status is pending: payment rescue"
    assert result.orders["reason"].iloc[1] == (
        "payment status is confirmed, dispatch delay days <= 1: no action"
    )


def test_chosen_arms_are_explained_as_given(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    features, effects = world
    chosen = pd.Series("control", index=features.index, dtype=object)
    chosen[features["payment_status"] == "pending"] = "payment_rescue"
    result = explain_arms(features, effects, chosen=chosen, max_fit_orders=5_000, seed=3)
    assert result.fidelity == 1.0
    assert (result.orders["arm"] == chosen).all()
    again = explain_arms(features, effects, chosen=chosen, max_fit_orders=5_000, seed=3)
    pd.testing.assert_frame_equal(result.orders, again.orders)


def test_numeric_bins_are_quantiles_with_counts() -> None:
    features = pd.DataFrame({"stock_confidence": np.linspace(0.0, 1.0, 400)})
    effects = pd.DataFrame({"expedite": features["stock_confidence"] - 0.5})
    table = segment_table(features, effects, bins=4, top=1)
    best = table[table["direction"] == "helps"].iloc[0]
    worst = table[table["direction"] == "harms"].iloc[0]
    assert (best["segment"], best["orders"]) == ("> 0.75", 100)
    assert (worst["segment"], worst["orders"]) == ("<= 0.25", 100)
    assert worst["mean_effect"] == pytest.approx(effects["expedite"].iloc[:100].mean())


def test_inputs_are_checked() -> None:
    features = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    effects = pd.DataFrame({"a": [0.1, np.nan, 0.2]})
    with pytest.raises(SchemaError, match=r"missing values in 1 row\(s\): 1"):
        explain_arms(features, effects)
    with pytest.raises(SchemaError, match="must share the same index"):
        segment_table(features, effects.iloc[:2])
    with pytest.raises(SchemaError, match="'control' is the control arm"):
        explain_arms(features.iloc[:1], pd.DataFrame({"control": [0.1]}))
    clean = effects.fillna(0.0)
    with pytest.raises(SchemaError, match=r"chosen: arms outside \['control', 'a'\]"):
        explain_arms(features, clean, chosen=pd.Series(["a", "b", "a"]))
    with pytest.raises(ConfigError, match="max_depth must be an integer >= 1"):
        explain_arms(features, clean, max_depth=0)


def test_segment_options_are_checked(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    features, effects = world
    with pytest.raises(ConfigError, match="bins must be an integer >= 2 and top >= 1; got 1, 3"):
        segment_table(features, effects, bins=1)


def test_segments_below_the_floor_are_left_out(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    features, effects = world
    table = segment_table(features, effects, min_orders=len(features) + 1)
    # No segment is left: every arm and direction has only its row saying so.
    assert list(table.columns) == [
        "arm",
        "direction",
        "rank",
        "feature",
        "segment",
        "orders",
        "mean_effect",
        "arm_mean_effect",
        "note",
    ]
    assert len(table) == 2 * effects.shape[1]
    assert (table["orders"] == 0).all()
    assert table["mean_effect"].isna().all()
    assert table["note"].str.startswith(f"no segment of >= {len(features) + 1:,} orders").all()


def test_an_arm_that_harms_in_no_segment_says_so() -> None:
    """Harm spread thin over single orders averages out in every segment: a note, not silence.

    ``nudge`` harms every fourth order and the 40 orders of the ``island`` region (-0.02
    against +0.05 elsewhere): the two ``device`` segments and ``mainland`` average above 0;
    only ``island`` (below the floor of 50) has a negative mean. ``call`` harms everywhere, so
    it helps nowhere, and its "helps" rows are not its least negative segments.
    """
    n = 400
    features = pd.DataFrame(
        {
            "device": np.where(np.arange(n) % 2 == 0, "app", "web"),
            "region": np.where(np.arange(n) < 40, "island", "mainland"),
        }
    )
    harmed = (np.arange(n) % 4 == 0) | (np.arange(n) < 40)
    effects = pd.DataFrame(
        {"nudge": np.where(harmed, -0.02, 0.05), "call": -0.01 - 0.001 * (np.arange(n) % 2)}
    )
    table = segment_table(features, effects, min_orders=50)
    nudge = table[table["arm"] == "nudge"]
    assert (nudge.loc[nudge["direction"] == "helps", "mean_effect"] > 0).all()
    (harms,) = nudge[nudge["direction"] == "harms"].itertuples(index=False)
    share = harmed.mean()
    assert harms.note == (
        "no segment of >= 50 orders has a negative mean effect (1 smaller one does), "
        f"though {share:.1%} of orders have a negative effect"
    )
    assert (harms.rank, harms.orders, harms.feature) == (0, 0, "")
    assert np.isnan(harms.mean_effect)
    # By hand: the smaller segment is the island, and no segment of the floor's size is negative.
    island = features["region"] == "island"
    assert effects.loc[island, "nudge"].mean() < 0 < effects.loc[~island, "nudge"].mean()
    for _, rows in features.groupby("device"):
        assert effects.loc[rows.index, "nudge"].mean() > 0
    call = table[table["arm"] == "call"]
    (helps,) = call[call["direction"] == "helps"].itertuples(index=False)
    assert helps.note == (
        "no segment of >= 50 orders has a positive mean effect, and no order has a positive effect"
    )
    harms_rows = call[call["direction"] == "harms"]
    assert (harms_rows["mean_effect"] < 0).all()
    assert list(harms_rows["rank"]) == list(range(1, len(harms_rows) + 1))
    assert (harms_rows["note"] == "").all()


def test_orders_reach_the_leaves_scikit_learns_apply_gives() -> None:
    # Every order is routed by the tree's split columns alone (diagnose._apply); it must land in
    # the leaf scikit-learn's own apply gives on the whole encoded matrix: numbers with missing
    # values (both ways of sending them), whole numbers, 0/1 flags and categories.
    rng = np.random.default_rng(3)
    n = 20_000
    number = rng.normal(size=n)
    number[rng.random(n) < 0.1] = np.nan
    features = pd.DataFrame(
        {
            "number": number,
            "count": rng.integers(0, 20, n).astype(float),
            "flag": rng.integers(0, 2, n).astype(float),
            "kind": rng.choice(["a", "b", "c", "d"], n),
        }
    )
    label = (np.nan_to_num(number, nan=1.0) + (features["kind"] == "b") + rng.normal(size=n)) > 0.5
    encoded = diagnose._encode(features)
    matrix = encoded.matrix(np.arange(n))
    for depth in (1, 3, 6):
        tree = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(matrix, label)
        np.testing.assert_array_equal(diagnose._apply(tree, encoded), tree.apply(matrix))
