"""Holdout test design: sample size, power and duration; hash assignment; sample-ratio check.

A design is sized for several treatment arms compared with one control arm. Sample sizes come
from statsmodels' normal power analysis: Cohen's h for the cancellation rate (two proportions)
and a standardised mean difference for retained revenue per order. With a multiple-testing
correction (Holm by default) each comparison is sized at ``alpha / arms``, the first Holm step,
so every arm keeps the designed power under Holm (Holm only ever rejects more than Bonferroni).

The design is written to ``experiments/<name>/design.toml``; :func:`assign_arms` and the
readout read it back. Assignment is ``md5(salt + ":" + order_id)``, so the same order lands in
the same arm on any machine, in any row order, and in SQL (``md5`` exists in every warehouse).
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import pandas as pd

from uplift.exceptions import ConfigError, SchemaError, check_option, describe_rows
from uplift.files import atomic_path

if TYPE_CHECKING:
    from uplift.log import ExperimentLog

Metric = Literal["cancel_rate", "revenue_per_order"]
Correction = Literal["holm", "bonferroni", "none"]
METRICS: tuple[str, ...] = get_args(Metric)
CORRECTIONS: tuple[str, ...] = get_args(Correction)
#: The platforms' convention: a sample-ratio mismatch this unlikely means a broken test.
SRM_THRESHOLD = 0.001
# 13 hex digits = 52 bits: the fraction int(hex, 16) / 16**13 is exact in a float64.
_HASH_HEX_DIGITS = 13
#: A test longer than ten years answers no question; a design that long has a mistake in it.
MAX_DAYS = 3653


# --------------------------------------------------------------------------------------------
# Power analysis (pure functions)


def comparison_alpha(alpha: float, comparisons: int, correction: Correction) -> float:
    """The significance level one arm-vs-control comparison is sized at."""
    check_option("correction", correction, CORRECTIONS)
    return alpha if correction == "none" else alpha / comparisons


def effect_size(metric: Metric, mde: float, *, baseline: float, sd: float | None = None) -> float:
    """Standardised effect of an ``mde`` improvement (Cohen's h, or mde / sd for revenue).

    For ``cancel_rate`` the improvement is a fall of the cancellation rate from ``baseline`` to
    ``baseline - mde``; for ``revenue_per_order`` a rise of ``mde`` per order.
    """
    from statsmodels.stats.proportion import proportion_effectsize

    if metric == "cancel_rate":
        return abs(float(proportion_effectsize(baseline, baseline - mde)))
    return mde / _revenue_sd(sd)


def effect_from_size(
    metric: Metric, h: float, *, baseline: float, sd: float | None = None
) -> float:
    """Invert :func:`effect_size`: the ``mde`` whose standardised effect is ``h``."""
    if metric == "cancel_rate":
        # Cohen's h = 2 asin(sqrt(p0)) - 2 asin(sqrt(p1)), solved for p1 below p0.
        lower = math.sin(max(math.asin(math.sqrt(baseline)) - h / 2, 0.0)) ** 2
        return baseline - lower
    return h * _revenue_sd(sd)


def control_sample_size(h: float, *, alpha: float, power: float, ratio: float) -> int:
    """Orders needed in the control arm; each treatment arm needs ``ratio`` times as many."""
    n = _solve_power(effect_size=h, nobs1=None, alpha=alpha, power=power, ratio=ratio)
    if not n < 1e15:
        raise ConfigError(
            f"no practical sample size detects this effect ({n:.3g} control orders); "
            "raise --mde or --alpha"
        )
    return math.ceil(n)


def detectable_size(n_control: float, *, alpha: float, power: float, ratio: float) -> float:
    """The standardised effect detectable with ``n_control`` control orders."""
    return _solve_power(effect_size=None, nobs1=n_control, alpha=alpha, power=power, ratio=ratio)


def _solve_power(**known: float | None) -> float:
    """statsmodels' normal power solver; a ConfigError where it finds no finite answer."""
    from statsmodels.stats.power import NormalIndPower

    try:
        with warnings.catch_warnings():
            # It warns, then returns NaN, when the root finder fails: the NaN is refused below.
            warnings.simplefilter("ignore")
            value = float(NormalIndPower().solve_power(**known))
    except (ValueError, ArithmeticError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        given = ", ".join(f"{k}={v:.4g}" for k, v in known.items() if v is not None)
        raise ConfigError(f"the power calculation has no answer for {given}; check the inputs")
    return value


def achieved_power(h: float, n_control: float, *, alpha: float, ratio: float) -> float:
    """The power of one comparison with ``n_control`` control orders."""
    from statsmodels.stats.power import NormalIndPower

    return float(NormalIndPower().power(effect_size=h, nobs1=n_control, alpha=alpha, ratio=ratio))


def allocation_shares(
    treatment_arms: Sequence[str], *, control: str, holdout: float | None
) -> dict[str, float]:
    """Control gets ``holdout`` (equal shares for all arms when None); the arms split the rest."""
    arms = list(treatment_arms)
    if not arms:
        raise ConfigError("a design needs at least one treatment arm (--arms 1 or more)")
    duplicated = sorted({a for a in arms if arms.count(a) > 1} | ({control} & set(arms)))
    if duplicated:
        raise ConfigError(f"arm names must be distinct and differ from control; {duplicated}")
    share = 1 / (len(arms) + 1) if holdout is None else holdout
    if not 0 < share < 1:
        raise ConfigError(f"--holdout must lie strictly between 0 and 1; got {share!r}")
    return {control: share, **dict.fromkeys(arms, (1 - share) / len(arms))}


def _revenue_sd(sd: float | None) -> float:
    if sd is None or not 0 < sd < math.inf:
        raise ConfigError(
            "revenue_per_order needs the standard deviation of revenue per order: pass "
            f"--past-log LOG (taken from its control arm) or --revenue-sd; got {sd!r}"
        )
    return sd


# --------------------------------------------------------------------------------------------
# The design


@dataclass(frozen=True)
class Design:
    """A sized holdout test, as stored in ``design.toml``.

    ``allocation`` maps every arm (control first) to its share of orders; ``n_control`` and
    ``n_per_arm`` are the orders each arm needs for ``power`` at ``mde`` on ``primary_metric``
    (``mde`` is a fall of the cancellation rate, or a rise of revenue per order, in absolute
    units); ``days`` is how long that takes at ``daily_orders`` eligible orders a day.
    """

    name: str
    control: str
    allocation: dict[str, float]
    costs: dict[str, float]
    primary_metric: Metric
    mde: float
    alpha: float
    power: float
    correction: Correction
    baseline_cancel_rate: float
    daily_orders: float
    start_date: date
    salt: str
    n_control: int
    n_per_arm: int
    days: int
    revenue_sd: float | None = None
    stratify: str | None = None

    @property
    def arms(self) -> tuple[str, ...]:
        """Every arm, control first."""
        return tuple(self.allocation)

    @property
    def treatment_arms(self) -> tuple[str, ...]:
        """The arms compared with control."""
        return tuple(a for a in self.allocation if a != self.control)

    @property
    def end_date(self) -> date:
        """The first day after the test."""
        return self.start_date + timedelta(days=self.days)

    @property
    def comparison_alpha(self) -> float:
        """The level each arm-vs-control comparison is sized at."""
        return comparison_alpha(self.alpha, len(self.treatment_arms), self.correction)

    @property
    def ratio(self) -> float:
        """Orders in each treatment arm per control order."""
        return self.allocation[self.treatment_arms[0]] / self.allocation[self.control]

    def detectable_effects(self, days: int | None = None) -> pd.DataFrame:
        """Per metric: baseline, detectable effect and orders per arm after ``days`` days.

        Columns: ``metric``, ``baseline``, ``mde``, ``days``, ``n_control``, ``n_per_arm``,
        ``power``. Revenue appears only when the design knows its standard deviation.
        """
        days = self.days if days is None else days
        n_control = days * self.daily_orders * self.allocation[self.control]
        h = detectable_size(
            n_control, alpha=self.comparison_alpha, power=self.power, ratio=self.ratio
        )
        rows: list[tuple[Metric, float, float | None]] = [
            ("cancel_rate", self.baseline_cancel_rate, None)
        ]
        if self.revenue_sd is not None:
            rows.append(("revenue_per_order", math.nan, self.revenue_sd))
        return pd.DataFrame(
            [
                {
                    "metric": metric,
                    "baseline": baseline,
                    "mde": effect_from_size(metric, h, baseline=baseline, sd=sd),
                    "days": days,
                    "n_control": n_control,
                    "n_per_arm": n_control * self.ratio,
                    "power": self.power,
                }
                for metric, baseline, sd in rows
            ]
        )

    def to_toml(self) -> str:
        """The design as TOML text (numbers unrounded)."""
        return _to_toml(self)

    def write(self, path: str | Path) -> Path:
        """Write ``design.toml`` atomically."""
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_toml())
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> Design:
        """Read a ``design.toml`` written by :meth:`write` (or edited by hand)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: design file not found (write one with `uplift design`)")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
        return _from_toml(data, str(path))


def plan_design(
    *,
    name: str,
    treatment_arms: Sequence[str],
    baseline_cancel_rate: float,
    mde: float,
    daily_orders: float,
    control: str = "control",
    holdout: float | None = None,
    primary_metric: Metric = "cancel_rate",
    alpha: float = 0.05,
    power: float = 0.8,
    correction: Correction = "holm",
    revenue_sd: float | None = None,
    costs: Mapping[str, float] | None = None,
    start_date: date | None = None,
    salt: str | None = None,
    stratify: str | None = None,
) -> Design:
    """Size a test of ``treatment_arms`` against ``control`` and return its :class:`Design`.

    The salt defaults to a digest of the name and start date, so re-running the same command
    gives the same design while two tests never share a salt by accident.
    """
    check_option("primary_metric", primary_metric, METRICS)
    _check_levels(alpha=alpha, power=power, mde=mde, daily_orders=daily_orders)
    if not 0 < baseline_cancel_rate < 1:
        raise ConfigError(
            f"--baseline-cancel-rate must lie in (0, 1); got {baseline_cancel_rate!r}"
        )
    if primary_metric == "cancel_rate" and mde >= baseline_cancel_rate:
        raise ConfigError(
            f"--mde {mde} is a fall of the cancellation rate and must be below the baseline "
            f"{baseline_cancel_rate}"
        )
    allocation = allocation_shares(treatment_arms, control=control, holdout=holdout)
    arm_costs = _arm_costs(costs or {}, allocation, control)
    start = start_date or date.today()
    k = len(allocation) - 1
    ratio = allocation[treatment_arms[0]] / allocation[control]
    per_test_alpha = comparison_alpha(alpha, k, correction)
    h = effect_size(primary_metric, mde, baseline=baseline_cancel_rate, sd=revenue_sd)
    n_control = control_sample_size(h, alpha=per_test_alpha, power=power, ratio=ratio)
    n_per_arm = math.ceil(n_control * ratio)
    days = math.ceil(n_control / (daily_orders * allocation[control]))
    if days > MAX_DAYS:
        raise ConfigError(
            f"the test would run more than ten years ({days:.3g} days at {daily_orders:g} orders "
            "a day); raise --mde, --daily-orders or --holdout"
        )
    design = Design(
        name=name,
        control=control,
        allocation=allocation,
        costs=arm_costs,
        primary_metric=primary_metric,
        mde=mde,
        alpha=alpha,
        power=power,
        correction=correction,
        baseline_cancel_rate=baseline_cancel_rate,
        daily_orders=daily_orders,
        start_date=start,
        salt=salt or hashlib.sha256(f"{name}:{start.isoformat()}".encode()).hexdigest()[:16],
        n_control=n_control,
        n_per_arm=n_per_arm,
        days=days,
        revenue_sd=revenue_sd,
        stratify=stratify,
    )
    design.detectable_effects()  # every figure the design reports must be computable
    return design


def _check_levels(*, alpha: float, power: float, mde: float, daily_orders: float) -> None:
    checks = {
        "--alpha": (alpha, 0 < alpha < 0.5, "in (0, 0.5)"),
        "--power": (power, 0 < power < 1, "in (0, 1)"),
        "--mde": (mde, 0 < mde < math.inf, "> 0 (an improvement, in absolute units)"),
        "--daily-orders": (daily_orders, 0 < daily_orders < math.inf, "a finite number > 0"),
    }
    for option, (value, ok, expected) in checks.items():
        if not ok:
            raise ConfigError(f"{option} must be {expected}; got {value!r}")


def _arm_costs(
    costs: Mapping[str, float], allocation: Mapping[str, float], control: str
) -> dict[str, float]:
    unknown = sorted(set(costs) - set(allocation))
    if unknown:
        raise ConfigError(
            f"--cost names arm(s) {', '.join(unknown)} that the design does not have; "
            f"arms: {', '.join(allocation)}"
        )
    return {arm: float(costs.get(arm, 0.0)) for arm in allocation if arm != control}


# --------------------------------------------------------------------------------------------
# TOML (written by hand: the format is small and the standard library only reads TOML)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date):
        return value.isoformat()
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value), ensure_ascii=False)


_SCALARS = (
    "name",
    "control",
    "primary_metric",
    "mde",
    "alpha",
    "power",
    "correction",
    "baseline_cancel_rate",
    "revenue_sd",
    "daily_orders",
    "start_date",
    "salt",
    "stratify",
)
_SIZES = ("n_control", "n_per_arm", "days")


def _to_toml(design: Design) -> str:
    lines = [f"# Holdout test {design.name}: written by `uplift design`; read by assign/readout."]
    lines += [
        f"{key} = {_toml_value(getattr(design, key))}"
        for key in _SCALARS
        if getattr(design, key) is not None
    ]
    lines += ["", "# Share of orders per arm (control first)", "[allocation]"]
    lines += [f"{_toml_value(a)} = {_toml_value(s)}" for a, s in design.allocation.items()]
    lines += ["", "# Cost of one use of each treatment arm", "[costs]"]
    lines += [f"{_toml_value(a)} = {_toml_value(c)}" for a, c in design.costs.items()]
    lines += ["", "# Orders each arm needs for the designed power, and the days that takes"]
    lines += ["[sample_size]"] + [f"{k} = {_toml_value(getattr(design, k))}" for k in _SIZES]
    return "\n".join(lines) + "\n"


_OPTIONAL = ("revenue_sd", "stratify")
_TEXT = ("name", "control", "primary_metric", "correction", "salt", "stratify")
_NUMBERS = ("mde", "alpha", "power", "baseline_cancel_rate", "revenue_sd", "daily_orders")


def _from_toml(data: dict[str, object], source: str) -> Design:
    required = [k for k in _SCALARS if k not in _OPTIONAL] + ["allocation", "sample_size"]
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{source}: missing key(s) {', '.join(missing)}")
    allocation = {
        str(k): _number(v, f"allocation.{k}", source)
        for k, v in _table(data, "allocation", source).items()
    }
    if abs(sum(allocation.values()) - 1) > 1e-9 or min(allocation.values()) <= 0:
        raise ConfigError(f"{source}: [allocation] shares must be positive and sum to 1")
    if data["control"] not in allocation or len(allocation) < 2:
        raise ConfigError(
            f"{source}: [allocation] must hold the control arm {data['control']!r} and at "
            "least one treatment arm"
        )
    fields = {k: data[k] for k in _SCALARS if k in data}
    for key in _NUMBERS:
        if key in fields:
            fields[key] = _number(fields[key], key, source)
    check_option("primary_metric", fields["primary_metric"], METRICS)
    check_option("correction", fields["correction"], CORRECTIONS)
    if not isinstance(fields["start_date"], date):
        raise ConfigError(f"{source}: start_date must be a date (YYYY-MM-DD)")
    sizes = _table(data, "sample_size", source)
    costs = _table(data, "costs", source)
    return Design(
        allocation=allocation,
        costs={str(k): _number(v, f"costs.{k}", source) for k, v in costs.items()},
        **{k: int(_number(sizes.get(k), f"sample_size.{k}", source)) for k in _SIZES},  # type: ignore[arg-type]
        **{k: str(v) if k in _TEXT else v for k, v in fields.items()},  # type: ignore[arg-type]
    )


def _number(value: object, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{source}: {key} must be a number; got {value!r}")
    return float(value)


def _table(data: dict[str, object], key: str, source: str) -> dict[str, object]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{key}] must be a table")
    return table


# --------------------------------------------------------------------------------------------
# Assignment


def hash_unit(order_ids: pd.Series, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per order: the first 52 bits of md5(salt:order_id).

    Equal to ``int(hashlib.md5(f"{salt}:{order_id}".encode()).hexdigest()[:13], 16) / 16**13``
    for every order, computed by DuckDB in one vectorised pass.
    """
    import duckdb

    ids = pd.DataFrame({"order_id": order_ids.astype(str).to_numpy(dtype=object)})
    with duckdb.connect() as con:
        con.register("ids", ids)
        digits = con.execute(
            "SELECT ('0x' || substr(md5(? || ':' || order_id), 1, ?))::UBIGINT AS h FROM ids",
            [salt, _HASH_HEX_DIGITS],
        ).fetchnumpy()["h"]
    return np.asarray(digits, dtype=np.float64) / float(16**_HASH_HEX_DIGITS)


def assign_arms(
    orders: pd.DataFrame,
    design: Design,
    *,
    stratify: str | None = None,
    source: str = "<frame>",
) -> pd.DataFrame:
    """Return ``orders`` with ``arm`` and ``propensity`` (the arm's designed share) beside them.

    Without strata, ``hash_unit`` falls into the arms' cumulative shares, so an order's arm
    depends on nothing but the salt and its id. With ``stratify`` (or the design's), orders are
    ranked by ``hash_unit`` within each stratum and cut in the designed shares, so every stratum
    is split exactly (to one order); that arm depends on the batch's other orders of the stratum.
    """
    ids = _order_ids(orders, source)
    if "arm" in orders.columns or "propensity" in orders.columns:
        raise SchemaError(
            f"{source}: orders already have an arm or propensity column; assign reads pending "
            "orders (drop those columns, or use the existing assignment)"
        )
    unit = hash_unit(ids, design.salt)
    column = stratify or design.stratify
    if column is not None:
        unit = _stratified_position(unit, orders, column, source)
    arms = np.array(design.arms, dtype=object)
    shares = np.array([design.allocation[a] for a in design.arms])
    edges = np.cumsum(shares)[:-1]
    index = np.searchsorted(edges, unit, side="right")
    out = orders.copy()
    out["arm"] = arms[index]
    out["propensity"] = shares[index]
    return out


def _order_ids(orders: pd.DataFrame, source: str) -> pd.Series:
    if "order_id" not in orders.columns:
        raise SchemaError(
            f"{source}: no order_id column; assignment hashes the order id. Columns present: "
            f"{', '.join(map(str, orders.columns))}"
        )
    ids = orders["order_id"]
    bad = ids.isna() | ids.duplicated(keep=False)
    if bad.any():
        raise SchemaError(
            f"{source}: column order_id must be present and unique; missing or duplicated in "
            f"{describe_rows(np.flatnonzero(bad.to_numpy()) + 1)}"
        )
    return ids


def _stratified_position(
    unit: np.ndarray, orders: pd.DataFrame, column: str, source: str
) -> np.ndarray:
    if column not in orders.columns:
        raise SchemaError(f"{source}: stratification column {column!r} not found")
    strata = orders[column].astype(str).to_numpy()
    ranks = pd.Series(unit).groupby(strata).rank(method="first").to_numpy()
    sizes = pd.Series(strata).map(pd.Series(strata).value_counts()).to_numpy()
    # Midpoints of equal slices of [0, 1): the designed shares cut each stratum exactly.
    return (ranks - 0.5) / sizes


# --------------------------------------------------------------------------------------------
# Sample-ratio mismatch


@dataclass(frozen=True)
class SampleRatioCheck:
    """Chi-square test of the orders per arm against the designed allocation.

    ``counts`` has ``arm``, ``observed``, ``expected``, ``observed_share``, ``expected_share``.
    The test is broken (``passed`` is False) when ``p_value < threshold``.
    """

    counts: pd.DataFrame
    statistic: float
    p_value: float
    threshold: float
    allocation_source: str

    @property
    def passed(self) -> bool:
        """Whether the arms' sizes are consistent with the allocation."""
        return bool(self.p_value >= self.threshold)


def check_sample_ratio(
    observed: Mapping[str, int] | pd.Series,
    allocation: Mapping[str, float],
    *,
    threshold: float = SRM_THRESHOLD,
    allocation_source: str = "design",
) -> SampleRatioCheck:
    """Compare orders per arm with ``allocation`` (shares summing to 1) by scipy's chi-square."""
    from scipy.stats import chisquare

    counts = pd.Series(observed, dtype=float)
    undesigned = sorted(set(counts.index) - set(allocation))
    if undesigned:
        raise SchemaError(
            f"arm(s) {', '.join(map(str, undesigned))} are in the log but not in the allocation "
            f"({', '.join(allocation)}); check the design or the arm labels"
        )
    arms = list(allocation)
    shares = np.array([allocation[a] for a in arms], dtype=float)
    shares = shares / shares.sum()
    obs = counts.reindex(arms, fill_value=0.0).to_numpy()
    expected = shares * obs.sum()
    statistic, p_value = chisquare(obs, expected)
    table = pd.DataFrame(
        {
            "arm": arms,
            "observed": obs.astype(np.int64),
            "expected": expected,
            "observed_share": obs / obs.sum(),
            "expected_share": shares,
        }
    )
    return SampleRatioCheck(table, float(statistic), float(p_value), threshold, allocation_source)


def baselines_from_log(log: ExperimentLog) -> tuple[float | None, float | None]:
    """The control arm's cancellation rate and standard deviation of revenue per order.

    Either is None when the past log lacks the outcome.
    """
    control = log.frame.loc[log.frame["arm"] == log.control]
    cancel_rate = 1 - float(control["retained"].mean()) if log.has_retained else None
    revenue_sd = float(control["revenue"].std()) if log.has_revenue else None
    return cancel_rate, revenue_sd
