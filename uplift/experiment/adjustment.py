"""Lin's regression adjustment from per-arm sums: two aggregate passes, no rows in memory.

Lin (2013, "Agnostic notes on regression adjustments to experimental data") regresses the
outcome on the treatment, the covariates centred at their weighted mean over both arms, and
their interactions, by weighted least squares (w = 1 / propensity); the treatment coefficient
is the effect and its HC1 (White) standard error is valid whether or not the regression is
right. CUPED is the one-covariate special case.

With the interactions the fit is separate in each arm: arm ``a`` has its own intercept and
slopes, fitted on its rows alone, and the effect is the difference of the two arms' predictions
at the pooled mean ``xbar``, ``alpha_t - alpha_c`` with ``alpha_a = (1, xbar)' theta_a``. So
everything comes from per-arm sums:

1. **Cross-products** (one pass): per arm, ``n`` and the weighted sums ``sum w z z'`` and
   ``sum w z y`` with ``z = (1, x)``. They give ``theta_a = G_a^+ sum w z y`` (``G_a = sum w z
   z'``), the pooled mean, and each arm's rank.
2. **Residuals** (a second pass, with the coefficients bound as parameters): the sandwich's
   middle for ``alpha_a`` is ``sum w^2 e^2 (g' z)^2`` with ``e = y - theta_a' z`` and ``g =
   G_a^+ (1, xbar)``: one sum per arm, outcome and comparison. The two arms' rows share no
   coefficient, so the effect's variance is the sum of the arms' variances, times HC1's
   ``n / (n - rank)`` over the two arms' orders and both arms' ranks.

This is the same estimate and HC1 error as ``statsmodels.WLS(...).fit(cov_type="HC1")`` of the
interacted design (the tests compare them to 1e-9). Only where the effect itself is not
identified (a level of a categorical covariate absent from one of the two arms) do the two
differ: the full fit's pseudo-inverse then picks one of many equally fitting answers, and each
arm's pseudo-inverse here picks another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from uplift.experiment.covariates import Encoded, encode_covariates
from uplift.experiment.inference import interval
from uplift.experiment.logtable import LogTable

__all__ = ["adjusted_effects", "lin_fits"]

#: Outcome column of each metric's fit; cancel_rate is 1 - retained, the retained fit negated.
_OUTCOME = {"cancel_rate": "retained", "retained_rate": "retained", "revenue_per_order": "revenue"}
_SIGN = {"cancel_rate": -1.0, "retained_rate": 1.0, "revenue_per_order": 1.0}
# Eigenvalues of an arm's cross-product matrix (scaled to a unit diagonal) below this share of
# the largest are collinearity, not information: exactly collinear indicators (a payment
# method and a payment status that always go together) leave about 1e-16, real covariates
# far more. statsmodels draws its line on the rows' singular values at about 1e-14, the
# square root of this scale: the same columns fall on each side.
_RANK_TOLERANCE = 1e-12
#: Most sums (groups times sums per group, per arm) that grouping the cross-products by
#: indicators may return; covariates beyond it are summed row by row. 4 million is 32 MB.
MAX_GROUP_SUMS = 4_000_000


def adjusted_effects(
    table: LogTable,
    effects: pd.DataFrame,
    covariates: Sequence[str] | None,
    *,
    alpha: float,
    notes: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """Replace each effect by Lin's regression-adjusted one; report the variance it saved.

    Returns the new effects (normal intervals, ``method`` = ``regression_adjusted``), the
    adjustment table and the covariates used. Relative intervals of adjusted rows divide the
    interval by the control mean, taking that mean as known.
    """
    encoded, used = encode_covariates(table, covariates, notes)
    outcomes = sorted({_OUTCOME[str(m)] for m in effects["metric"]})
    fits = lin_fits(table, encoded, outcomes, list(dict.fromkeys(effects["arm"])))
    keys = list(zip(effects["arm"], effects["metric"], strict=True))
    estimate = np.array([_SIGN[m] * fits[(a, _OUTCOME[m])][0] for a, m in keys])
    error = np.array([fits[(a, _OUTCOME[m])][1] for a, m in keys])
    return _replace(effects, estimate, error, alpha), _adjustment_table(effects, error), used


def lin_fits(
    table: LogTable, encoded: list[Encoded], outcomes: list[str], treated: list[str]
) -> dict[tuple[str, str], tuple[float, float]]:
    """Per (treatment arm, outcome column): Lin's effect against control and its HC1 error."""
    arms = [table.control, *treated]
    grams = _cross_products(table, encoded, outcomes, arms)
    p = len(encoded)
    solved = {a: _solve(grams[a][0][: p + 1, : p + 1]) for a in arms}
    theta = {(a, y): solved[a][0] @ grams[a][0][: p + 1, p + 1 + i] for a in arms
             for i, y in enumerate(outcomes)}  # fmt: skip
    control = table.control
    points: dict[str, np.ndarray] = {}
    for t in treated:
        total = grams[t][0][0, : p + 1] + grams[control][0][0, : p + 1]
        points[t] = total / total[0]  # (1, pooled weighted mean of the covariates)
    # g' z is the row's share in the arm's prediction at the pooled mean (its influence).
    g = {(t, t): solved[t][0] @ points[t] for t in treated}
    g.update({(control, t): solved[control][0] @ points[t] for t in treated})
    middle = _residual_sums(table, encoded, outcomes, arms, theta, g)
    out = {}
    for t in treated:
        n = grams[t][1] + grams[control][1]
        rank = solved[t][1] + solved[control][1]
        for y in outcomes:
            effect = points[t] @ (theta[(t, y)] - theta[(control, y)])
            hc0 = middle[(t, t, y)] + middle[(control, t, y)]
            out[(t, y)] = (float(effect), float(np.sqrt(hc0 * n / (n - rank))))
    return out


def _columns(table: LogTable, encoded: list[Encoded], outcomes: list[str]) -> tuple[str, list[Any]]:
    """SELECT arm, w, x0.., y0.. FROM log: the encoded covariates and outcomes of every row."""
    # As doubles: the engines read an indicator's 1.0 as a decimal and would cast it at each use.
    xs = [f"CAST({e.sql} AS DOUBLE) AS x{j}" for j, e in enumerate(encoded)]
    ys = [f"CAST({table.dialect.quote(y)} AS DOUBLE) AS y{i}" for i, y in enumerate(outcomes)]
    params = [v for e in encoded for v in e.params]
    select = ", ".join(["arm", "1.0 / propensity AS w", *xs, *ys])
    return f"SELECT {select} FROM log", params


def _grouped(encoded: list[Encoded], outcomes: int) -> list[int]:
    """The indicator columns the cross-products group rows by: whole covariates, fewest levels
    first, while the groups' sums (combinations times sums per group) stay within
    ``MAX_GROUP_SUMS``."""
    groups: dict[str, list[int]] = {}
    for j, e in enumerate(encoded):
        if e.group is not None:
            groups.setdefault(e.group, []).append(j)
    chosen: list[int] = []
    combinations = 1
    for columns in sorted(groups.values(), key=len):
        combinations *= len(columns) + 1  # the columns' levels and the level left out
        atoms = 1 + len(encoded) - len(chosen) - len(columns) + outcomes
        if combinations * atoms * (atoms + 1) // 2 > MAX_GROUP_SUMS:
            break
        chosen += columns
    return sorted(chosen)


def _cross_products(
    table: LogTable, encoded: list[Encoded], outcomes: list[str], arms: list[str]
) -> dict[str, tuple[np.ndarray, int]]:
    """Per arm: sum w v v' for v = (1, x, y) (outcome-by-outcome products left out), and n.

    An indicator is constant among the rows that share its value, so the rows are grouped by
    the indicators (and arm) and summed over the other columns only: within a group the
    products with an indicator are its value times the group's sums. Far fewer sums per row
    make the pass about three times faster; the groups' sums add up to the same matrix.
    """
    total = table.dialect.total
    p, m = len(encoded), len(outcomes)
    keys = _grouped(encoded, m)
    # The atoms vary within a group: the constant, the other covariates and the outcomes,
    # each with its place in v.
    atoms = [("", 0)]
    atoms += [(f" * x{j}", 1 + j) for j in range(p) if j not in keys]
    atoms += [(f" * y{i}", 1 + p + i) for i in range(m)]
    pairs = [(a, b) for a in range(len(atoms)) for b in range(a, len(atoms))
             if atoms[a][1] <= p]  # fmt: skip
    sums = [f"{total}(w{atoms[a][0]}{atoms[b][0]}) AS s{k}" for k, (a, b) in enumerate(pairs)]
    by = ", ".join(["arm", *(f"x{j}" for j in keys)])
    inner, params = _columns(table, encoded, outcomes)
    where = ", ".join("?" for _ in arms)
    found = table.query(
        f"SELECT {by}, count(*) AS n, {', '.join(sums)} FROM ({inner}) AS t "
        f"WHERE arm IN ({where}) GROUP BY {by}",
        [*params, *arms],
    )
    # The groups in one order, so that the result does not depend on the engine's.
    found = found.sort_values(by.split(", "), kind="stable")
    place = [position for _, position in atoms]
    slots = [1 + j for j in keys]
    out = {}
    for arm in arms:
        rows = found[found["arm"] == arm]
        values = rows[[f"s{k}" for k in range(len(pairs))]].to_numpy(dtype=float)
        within = np.zeros((len(atoms), len(atoms)))
        first = np.zeros((len(rows), len(atoms)))  # each group's sums of w times an atom
        for k, (a, b) in enumerate(pairs):
            within[a, b] = within[b, a] = values[:, k].sum()
            if a == 0:
                first[:, b] = values[:, k]
        level = rows[[f"x{j}" for j in keys]].to_numpy(dtype=float)
        matrix = np.zeros((p + 1 + m, p + 1 + m))
        matrix[np.ix_(place, place)] = within
        matrix[np.ix_(slots, place)] = level.T @ first
        matrix[np.ix_(place, slots)] = matrix[np.ix_(slots, place)].T
        matrix[np.ix_(slots, slots)] = (level * first[:, :1]).T @ level
        out[arm] = (matrix, int(rows["n"].sum()))
    return out


def _solve(gram: np.ndarray) -> tuple[np.ndarray, int]:
    """The pseudo-inverse of a cross-product matrix and its rank (scaled to a unit diagonal)."""
    diagonal = np.sqrt(np.diag(gram))
    scale = np.where(diagonal > 0, diagonal, 1.0)
    values, vectors = np.linalg.eigh(gram / np.outer(scale, scale))
    kept = values > _RANK_TOLERANCE * values.max()
    inverse = (vectors[:, kept] / values[kept]) @ vectors[:, kept].T
    return inverse / np.outer(scale, scale), int(kept.sum())


def _residual_sums(
    table: LogTable,
    encoded: list[Encoded],
    outcomes: list[str],
    arms: list[str],
    theta: dict[tuple[str, str], np.ndarray],
    g: dict[tuple[str, str], np.ndarray],
) -> dict[tuple[str, str, str], float]:
    """sum w^2 e^2 (g' z)^2 per (arm, treatment arm it is compared for, outcome)."""
    p = len(encoded)
    control, treated = arms[0], arms[1:]

    def linear(coefficients: np.ndarray) -> tuple[str, list[float]]:
        terms = ["?", *(f"? * x{j}" for j in range(p))]
        return "(" + " + ".join(terms) + ")", [float(c) for c in coefficients]

    inner, params = _columns(table, encoded, outcomes)
    # Parameters bind in the order they appear: the CASEs' coefficients, then the inner query's.
    select: list[str] = ["arm", "w"]
    bound: list[Any] = []
    for i, y in enumerate(outcomes):
        cases = []
        for arm in arms:
            fitted, values = linear(theta[(arm, y)])
            cases.append(f"WHEN ? THEN y{i} - {fitted}")
            bound += [arm, *values]
        select.append(f"CASE arm {' '.join(cases)} END AS e{i}")
    for k, t in enumerate(treated):
        own, own_values = linear(g[(t, t)])
        base, base_values = linear(g[(control, t)])
        select.append(f"CASE arm WHEN ? THEN {own} WHEN ? THEN {base} END AS h{k}")
        bound += [t, *own_values, control, *base_values]
    total = table.dialect.total
    sums = [f"{total}(w * w * e{i} * e{i} * h{k} * h{k}) AS r{i}_{k}"
            for i in range(len(outcomes)) for k in range(len(treated))]  # fmt: skip
    where = ", ".join("?" for _ in arms)
    found = table.query(
        f"SELECT arm, {', '.join(sums)} FROM (SELECT {', '.join(select)} FROM ({inner}) AS t "
        f"WHERE arm IN ({where})) AS u GROUP BY arm",
        [*bound, *params, *arms],
    ).set_index("arm")
    out = {}
    for i, y in enumerate(outcomes):
        for k, t in enumerate(treated):
            column = found[f"r{i}_{k}"].to_numpy(dtype=float)
            out[(t, t, y)] = column[list(found.index).index(t)]
            out[(control, t, y)] = column[list(found.index).index(control)]
    return out


def _replace(
    effects: pd.DataFrame, estimate: np.ndarray, error: np.ndarray, alpha: float
) -> pd.DataFrame:
    out = effects.copy()
    fresh = interval(estimate, error, np.full(len(estimate), np.inf), alpha)
    for column in ("std_error", "df", "ci_lower", "ci_upper", "p_value"):
        out[column] = fresh[column]
    out["difference"] = estimate
    control = out["control_mean"].to_numpy()
    out["relative_difference"] = estimate / control
    out["relative_ci_lower"] = fresh["ci_lower"] / control
    out["relative_ci_upper"] = fresh["ci_upper"] / control
    out["method"] = "regression_adjusted"
    return out


def _adjustment_table(effects: pd.DataFrame, adjusted: np.ndarray) -> pd.DataFrame:
    raw = effects["std_error"].to_numpy()
    return pd.DataFrame(
        {
            "arm": effects["arm"].to_numpy(),
            "metric": effects["metric"].to_numpy(),
            "std_error_unadjusted": raw,
            "std_error_adjusted": adjusted,
            "variance_reduction": 1 - (adjusted / raw) ** 2,
            "interval_width_ratio": adjusted / raw,
        }
    )
