"""Holdout test design: the sized :class:`Design`, and ``design.toml`` written and read.

The design is written to ``experiments/<name>/design.toml``; assignment
(:mod:`uplift.experiment.assignment`) and the readout read it back.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from uplift.data.files import atomic_path
from uplift.exceptions import ConfigError, check_option
from uplift.experiment.power import (
    CORRECTIONS,
    MAX_DAYS,
    METRICS,
    Correction,
    Metric,
    allocation_shares,
    comparison_alpha,
    control_sample_size,
    detectable_size,
    effect_from_size,
    effect_size,
)

if TYPE_CHECKING:
    from uplift.data.log import ExperimentLog

__all__ = ["Design", "baselines_from_log", "plan_design"]


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


def baselines_from_log(log: ExperimentLog) -> tuple[float | None, float | None]:
    """The control arm's cancellation rate and standard deviation of revenue per order.

    Either is None when the past log lacks the outcome.
    """
    control = log.frame.loc[log.frame["arm"] == log.control]
    cancel_rate = 1 - float(control["retained"].mean()) if log.has_retained else None
    revenue_sd = float(control["revenue"].std()) if log.has_revenue else None
    return cancel_rate, revenue_sd
