"""Power analysis of a holdout test: effect sizes, sample size, detectable effect, allocation.

A design is sized for several treatment arms compared with one control arm. Sample sizes come
from statsmodels' normal power analysis: Cohen's h for the cancellation rate (two proportions)
and a standardised mean difference for retained revenue per order. With a multiple-testing
correction (Holm by default) each comparison is sized at ``alpha / arms``, the first Holm step,
so every arm keeps the designed power under Holm (Holm only ever rejects more than Bonferroni).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal, get_args

from uplift.exceptions import ConfigError, check_option

__all__ = [
    "CORRECTIONS",
    "MAX_DAYS",
    "METRICS",
    "Correction",
    "Metric",
    "achieved_power",
    "allocation_shares",
    "comparison_alpha",
    "control_sample_size",
    "detectable_size",
    "effect_from_size",
    "effect_size",
]

Metric = Literal["cancel_rate", "revenue_per_order"]
Correction = Literal["holm", "bonferroni", "none"]
METRICS: tuple[str, ...] = get_args(Metric)
CORRECTIONS: tuple[str, ...] = get_args(Correction)
#: A test longer than ten years answers no question; a design that long has a mistake in it.
MAX_DAYS = 3653


def comparison_alpha(alpha: float, comparisons: int, correction: Correction) -> float:
    """The significance level one arm-vs-control comparison is sized at."""
    check_option("correction", correction, CORRECTIONS)
    return alpha if correction == "none" else alpha / comparisons


def effect_size(metric: Metric, mde: float, *, baseline: float, sd: float | None = None) -> float:
    """Standardised effect of an ``mde`` improvement (Cohen's h, or mde / sd for revenue).

    For ``cancel_rate`` the improvement is a fall of the cancellation rate from ``baseline`` to
    ``baseline - mde``; for ``revenue_per_order`` a rise of ``mde`` per order.
    """
    from statsmodels.stats.proportion import proportion_effectsize  # noqa: PLC0415 - statsmodels: ~1.3 s to import

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
    from statsmodels.stats.power import NormalIndPower  # noqa: PLC0415 - statsmodels: ~1.3 s to import

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
    from statsmodels.stats.power import NormalIndPower  # noqa: PLC0415 - statsmodels: ~1.3 s to import

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
