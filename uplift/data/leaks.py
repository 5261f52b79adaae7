"""The leak guard: refuse feature columns that differ between arms far beyond chance.

A model may only learn from, and a readout only adjust for, what was known before the arm was
chosen. A column recorded afterwards (a conversion, a support contact the action caused) differs
between the arms because of the arm, and adjusting for it takes the effect away. On the
Hillstrom e-mail test, the Mens e-mail's effect on spend, adjusted by least squares for the
customer columns, is +0.76 per customer (p = 1e-7); with ``conversion`` among the columns it is
-0.02 (p = 0.8). Randomisation balances every column known before the
assignment, so the guard checks each feature's balance across arms, the diagnostic that
Imbens & Rubin (2015, *Causal Inference*, ch. 14) and Austin (2009, "Balance diagnostics for
comparing the distribution of baseline covariates between treatment groups in propensity-score
matched samples", *Statistics in Medicine* 28: 3083-3107) give for randomised and weighted
comparisons, and refuses a column that is far out of balance. It also catches a targeting column
the logged propensities do not account for.

Every feature is compared between each treatment arm and the control arm:

* A numeric column (numbers, times) becomes the vector ``z = (value, or 0 where missing;
  1 where missing)``: its mean and its missing share, because missingness can leak as well.
  A column with nothing missing is just its value. Values are first scaled and centred by the
  column's size, mean and sd, which changes no statistic. Text, categorical and boolean columns
  become one-hot vectors of their :data:`MAX_LEVELS` most frequent levels, "other" and
  "missing".
* Means are Hajek (normalised) inverse-propensity-weighted means, ``w = 1 / propensity``. In a
  targeting policy's log the features are associated with the arm by design, and the weights
  remove exactly that association. In a randomised log the weights are equal within an arm, so
  the means are plain ones.
* The difference of the means, ``d = m_arm - m_control``, gets the Wald statistic
  ``d' V^+ d``. ``V`` is the sandwich variance of the two weighted means,
  ``sum w^2 (z - m)(z - m)' / (sum w)^2`` per arm, centred on ``m = (m_arm + m_control) / 2``
  (the common mean if the column is balanced, as in a score test). That keeps ``V`` positive
  for a column that is constant within each arm but not between them, the bluntest leak, and
  for a level found in one arm only. Under balance the statistic is chi-square with
  ``df = rank V`` degrees of freedom. With equal weights and arms of equal size it is exactly
  Pearson's chi-square test of homogeneity of a categorical column, and the square of the
  pooled-variance two-sample z of a numeric one; with unequal arms, the same for large arms.
* ``effect_size`` is the standardised difference ``sqrt(d' S^+ d)``, where ``S`` is the average
  of the two arms' weighted covariances of ``z`` about ``m``. For a numeric column this is
  Austin's standardised mean difference; over levels, the multinomial (Mahalanobis) form of
  Yang & Dalton (2012, SAS Global Forum paper 335). Spreads about ``m`` add ``d d' / 4`` to
  the usual pooled covariance: no change for small differences, and a finite 2 (not infinity)
  for a 0/1 column that splits the arms. Chance alone adds about ``df / statistic``
  to its square, which matters for columns with many levels, so that share is removed:
  ``effect_size = sqrt(d' S^+ d * max(0, 1 - df / statistic))``.
* A column is flagged in an arm when ``p_value < alpha / tests`` (Bonferroni over every
  column x treatment arm, family-wise level :data:`ALPHA`) *and* ``effect_size >=``
  :data:`MIN_EFFECT`. The second condition keeps a very large log from refusing a column for
  an imbalance too small to matter.

Everything comes from per-arm weighted sums (:class:`ColumnSums`): taken here with
``numpy.bincount`` from a log in memory (one pass per column, no per-row Python), or by the SQL
engine that holds a log too large for memory (:mod:`uplift.experiment.balance`), and handed to
:func:`balance_from_sums` and :func:`leak_check`, which test them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import chdtrc

from uplift.data.log import ExperimentLog
from uplift.exceptions import ConfigError, SchemaError

__all__ = [
    "ALPHA",
    "MAX_LEVELS",
    "MIN_EFFECT",
    "TABLE_COLUMNS",
    "ColumnSums",
    "LeakCheck",
    "balance_from_sums",
    "balance_table",
    "check_leaks",
    "leak_check",
    "leak_message",
    "refuse_leaks",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

#: Family-wise false-alarm rate of the guard per log, Bonferroni-split over its columns x arms.
#: A refused column stops a run, so alarms must be rare. Measured on clean simulated logs
#: (realistic world): of 1,000 randomised logs of 3,000 orders none had a column flagged, of
#: 1,000 logged-policy ones 5 (0.5%: arms of ~240 orders with weights up to 33 have weighted
#: means whose far tails are heavier than normal); of 300 of each kind of 20,000 orders, none.
#: Leaks still stand out: Hillstrom's conversion has p ~ 1e-13 in the Mens arm.
ALPHA = 0.001
#: Smallest standardised difference that is refused. Austin's (2009) "negligible" 0.1 is too
#: lax here: a post-treatment column moves about as much as the treatment moves the outcome,
#: and nudges are small. Hillstrom's conversion differs by 0.071 (Mens E-Mail) and 0.035
#: (Womens), spend by 0.050 and 0.030. In a 1,000,000-order simulated log the clean columns
#: differ by at most 0.014 (none significant), and a 0.5-point drift in a 10% share is 0.017.
#: 0.02 sits between. Below about 100,000 orders per arm the Bonferroni test, not this, decides.
MIN_EFFECT = 0.02
#: Levels of a text or categorical column tested one by one; the rest are pooled as "other".
MAX_LEVELS = 20
#: Columns of :func:`balance_table`, in order.
TABLE_COLUMNS = ("column", "arm", "kind", "df", "statistic", "p_value", "effect_size", "flagged")

# Dimensions whose pooled variance is below this (for values scaled to about 1, or 0/1
# indicators) are constant in the two arms compared and are left out of the test.
_CONSTANT = 1e-12
# Eigenvalues below this share of the largest (on the correlation scale) are rank deficiency:
# the one-hot indicators of a column always sum to 1.
_RANK_TOLERANCE = 1e-10


@dataclass(frozen=True)
class LeakCheck:
    """The balance of every feature across arms, and the columns the guard refuses.

    Attributes
    ----------
    table : DataFrame
        :func:`balance_table`: one row per feature x treatment arm.
    allowed : tuple of str
        Features the user keeps although they may be flagged (``--allow``).
    source : str
        The log's file (or ``<frame>``).
    alpha : float
        Family-wise level; a row is significant below ``alpha / tests``.
    min_effect : float
        Smallest effect size that is flagged.
    propensity_given : bool
        Whether the means were weighted by logged propensities (else the arms' shares).
    """

    table: pd.DataFrame
    allowed: tuple[str, ...]
    source: str
    alpha: float
    min_effect: float
    propensity_given: bool

    @property
    def tests(self) -> int:
        """How many column x arm tests share the family-wise level."""
        return len(self.table)

    @property
    def flagged(self) -> tuple[str, ...]:
        """Features flagged in at least one arm, in the log's order (allowed ones included)."""
        return tuple(self.table.loc[self.table["flagged"], "column"].drop_duplicates())

    @property
    def refused(self) -> tuple[str, ...]:
        """Flagged features that are not allowed."""
        return tuple(c for c in self.flagged if c not in self.allowed)

    @property
    def passed(self) -> bool:
        """Whether no feature is refused."""
        return not self.refused


def balance_table(
    log: ExperimentLog, *, alpha: float = ALPHA, min_effect: float = MIN_EFFECT
) -> pd.DataFrame:
    """Test every feature of ``log`` for balance between each treatment arm and control.

    Returns one row per feature x treatment arm (features in the log's order, arms as in
    ``log.treatment_arms``): ``column``, ``arm``, ``kind`` (``numeric`` or ``levels``), ``df``
    and ``statistic`` (the Wald chi-square), ``p_value``, ``effect_size`` (the standardised
    difference) and ``flagged`` (``p_value < alpha / tests`` and ``effect_size >=
    min_effect``). The method is in the module's description.
    """
    _check_levels(alpha, min_effect)
    frame = log.frame
    arms = log.arms
    codes, labels = pd.factorize(frame["arm"])
    arm = pd.Index(arms).get_indexer(labels).astype(np.intp)[codes]
    w = 1.0 / frame["propensity"].to_numpy(dtype=float)
    w2 = w * w
    sw = _sum_by(arm, w, len(arms))
    sw2 = _sum_by(arm, w2, len(arms))
    sums = [(name, _column_sums(frame[name], arm, len(arms), w, w2)) for name in log.features]
    return balance_from_sums(sums, arms, sw, sw2, alpha=alpha, min_effect=min_effect)


def balance_from_sums(
    sums: Sequence[tuple[str, ColumnSums]],
    arms: Sequence[str],
    sw: FloatArray,
    sw2: FloatArray,
    *,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
) -> pd.DataFrame:
    """:func:`balance_table` from per-arm sums: ``sums`` per feature (arms in the order of
    ``arms``, control first), ``sw`` and ``sw2`` the arms' sums of w and w^2."""
    _check_levels(alpha, min_effect)
    rows = []
    for name, column in sums:
        for index, arm_name in enumerate(arms[1:], start=1):
            statistic, df, effect = _compare(column, sw, sw2, index, 0)
            rows.append((name, arm_name, column.kind, df, statistic, effect))
    table = pd.DataFrame(
        {
            "column": pd.Series([r[0] for r in rows], dtype=object),
            "arm": pd.Series([r[1] for r in rows], dtype=object),
            "kind": pd.Series([r[2] for r in rows], dtype=object),
            "df": np.array([r[3] for r in rows], dtype=np.int64),
            "statistic": np.array([r[4] for r in rows], dtype=float),
            "effect_size": np.array([r[5] for r in rows], dtype=float),
        }
    )
    df_values = table["df"].to_numpy()
    # chdtrc is the chi-square survival function; a test without degrees of freedom (a column
    # constant in both arms) has p = 1.
    p_value = np.where(
        df_values > 0, chdtrc(np.maximum(df_values, 1), table["statistic"].to_numpy()), 1.0
    )
    table.insert(5, "p_value", p_value)
    tests = max(len(table), 1)
    table["flagged"] = (table["p_value"] < alpha / tests) & (table["effect_size"] >= min_effect)
    return table


def check_leaks(
    log: ExperimentLog,
    allow: Sequence[str] = (),
    *,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
) -> LeakCheck:
    """Test the features of ``log`` for leaks and return the result; never raises on a leak.

    ``allow`` names features the user keeps even if they are flagged: they are still tested
    and shown, but not refused.

    Raises
    ------
    ConfigError
        When ``allow`` names a column that is not a feature of the log, or ``alpha`` /
        ``min_effect`` are out of range.
    """
    allowed = _allowed(log.features, log.source, allow)
    table = balance_table(log, alpha=alpha, min_effect=min_effect)
    return LeakCheck(table, allowed, log.source, alpha, min_effect, log.propensity_given)


def leak_check(
    table: pd.DataFrame,
    features: Sequence[str],
    allow: Sequence[str],
    source: str,
    propensity_given: bool,
    *,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
) -> LeakCheck:
    """:func:`check_leaks` of a balance table made by :func:`balance_from_sums`."""
    allowed = _allowed(features, source, allow)
    return LeakCheck(table, allowed, source, alpha, min_effect, propensity_given)


def refuse_leaks(
    log: ExperimentLog,
    allow: Sequence[str] = (),
    source: str | None = None,
    *,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
) -> None:
    """Raise :class:`SchemaError` when a feature of ``log`` that is not allowed is flagged.

    The one-line message names ``source`` (default ``log.source``), each refused column with
    its most unbalanced arm and the size of the difference, and the fix (``--ignore`` or
    ``--allow``).

    Raises
    ------
    SchemaError
        When a feature not in ``allow`` is flagged by :func:`check_leaks`.
    ConfigError
        As :func:`check_leaks`.
    """
    check = check_leaks(log, allow, alpha=alpha, min_effect=min_effect)
    if not check.passed:
        raise SchemaError(leak_message(check, log.control, source or log.source))


# --------------------------------------------------------------------------------------------
# Options and message


def _check_levels(alpha: float, min_effect: float) -> None:
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (exclusive); got {alpha!r}")
    if not min_effect >= 0:
        raise ConfigError(f"min_effect must be a number >= 0; got {min_effect!r}")


def _allowed(features: Sequence[str], source: str, allow: Sequence[str]) -> tuple[str, ...]:
    names = (allow,) if isinstance(allow, str) else tuple(allow)
    unknown = [str(n) for n in names if n not in features]
    if unknown:
        raise ConfigError(
            f"{source}: --allow names column(s) {', '.join(unknown)} that are not features "
            f"of the log; features: {', '.join(features) or 'none'}"
        )
    return tuple(str(n) for n in names)


def leak_message(check: LeakCheck, control: str, source: str) -> str:
    """The one-line message of a failed check: each refused column, its worst arm, the fix."""
    table = check.table[check.table["flagged"]]
    parts = []
    for column in check.refused:
        rows = table[table["column"] == column]
        worst = rows.sort_values("effect_size").iloc[-1]
        parts.append(
            f"{column} (arm {worst['arm']!r} vs control {control!r}: standardised difference "
            f"{worst['effect_size']:.3f}, p = {worst['p_value']:.1e})"
        )
    weighted = " even weighted by 1/propensity," if check.propensity_given else ""
    if len(parts) == 1:
        column = check.refused[0]
        what = f"feature column {parts[0]} differs between arms"
        fix = f"leave it out with --ignore {column}, or keep it with --allow {column}"
        likely = "it was likely recorded after the arm was chosen, or the arm was chosen by it"
    else:
        what = f"feature columns {', '.join(parts)} differ between arms"
        fix = (
            f"for each of {', '.join(check.refused)}: leave it out with --ignore COL, "
            "or keep it with --allow COL"
        )
        likely = "they were likely recorded after the arm was chosen, or the arm was chosen by them"
    return (
        f"{source}: {what} far beyond chance{weighted} (family-wise level {check.alpha:g} over "
        f"{check.tests} tests), so {likely}; {fix}"
    )


# --------------------------------------------------------------------------------------------
# Numbers


@dataclass(frozen=True)
class ColumnSums:
    """Per-arm weighted sums of one column's vector ``z`` (``d`` entries).

    ``swz`` and ``sw2z`` are arms x d (sums of ``w z`` and ``w^2 z``), ``swzz`` and ``sw2zz``
    arms x d x d (sums of ``w z z'`` and ``w^2 z z'``).
    """

    kind: str
    swz: FloatArray
    sw2z: FloatArray
    swzz: FloatArray
    sw2zz: FloatArray


def _column_sums(
    column: pd.Series, arm: IntArray, n_arms: int, w: FloatArray, w2: FloatArray
) -> ColumnSums:
    if _is_numeric(column):
        values = _numeric_values(column)
        missing = ~np.isfinite(values)
        present = values[~missing]
        size = float(np.max(np.abs(present))) if present.size else 0.0
        scaled = present / size if size > 0 else present
        centre = float(scaled.mean()) if scaled.size else 0.0
        spread = float(scaled.std()) if scaled.size else 0.0
        filled = np.zeros(len(values))
        if size > 0 and spread > 0:
            filled[~missing] = (scaled - centre) / spread
        dims = [filled, missing.astype(float)] if missing.any() else [filled]
        return _dense_sums(np.column_stack(dims), arm, n_arms, w, w2)
    codes, levels = _level_codes(column)
    joint = arm * levels + codes
    swz = _sum_by(joint, w, n_arms * levels).reshape(n_arms, levels)
    sw2z = _sum_by(joint, w2, n_arms * levels).reshape(n_arms, levels)
    diagonal = np.arange(levels)
    swzz = np.zeros((n_arms, levels, levels))
    sw2zz = np.zeros((n_arms, levels, levels))
    swzz[:, diagonal, diagonal] = swz  # one-hot: z z' is diagonal, z_j^2 = z_j
    sw2zz[:, diagonal, diagonal] = sw2z
    return ColumnSums("levels", swz, sw2z, swzz, sw2zz)


def _dense_sums(
    z: FloatArray, arm: IntArray, n_arms: int, w: FloatArray, w2: FloatArray
) -> ColumnSums:
    d = z.shape[1]
    swz = np.zeros((n_arms, d))
    sw2z = np.zeros((n_arms, d))
    swzz = np.zeros((n_arms, d, d))
    sw2zz = np.zeros((n_arms, d, d))
    for j in range(d):
        swz[:, j] = _sum_by(arm, w * z[:, j], n_arms)
        sw2z[:, j] = _sum_by(arm, w2 * z[:, j], n_arms)
        for k in range(j, d):
            product = z[:, j] * z[:, k]
            swzz[:, j, k] = swzz[:, k, j] = _sum_by(arm, w * product, n_arms)
            sw2zz[:, j, k] = sw2zz[:, k, j] = _sum_by(arm, w2 * product, n_arms)
    return ColumnSums("numeric", swz, sw2z, swzz, sw2zz)


def _sum_by(group: IntArray, values: FloatArray, groups: int) -> FloatArray:
    """Sum of ``values`` per ``group`` (0 .. groups - 1), one pass."""
    return np.bincount(group, values, minlength=groups).astype(np.float64, copy=False)


def _is_numeric(column: pd.Series) -> bool:
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return False
    return (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
    )


def _numeric_values(column: pd.Series) -> FloatArray:
    """The column as floats, NaN where missing; times as seconds since the earliest."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        column = column - column.min()
    if pd.api.types.is_timedelta64_dtype(column.dtype):
        column = column.dt.total_seconds()
    return column.to_numpy(dtype=float, na_value=np.nan)


def _level_codes(column: pd.Series) -> tuple[IntArray, int]:
    """Codes 0..MAX_LEVELS-1 of the most frequent levels, then "other", then "missing"."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy().astype(np.intp)
    else:
        codes = pd.factorize(column, use_na_sentinel=True)[0].astype(np.intp)
    counts = np.bincount(codes + 1)  # [missing, level 0, level 1, ...]
    top = np.argsort(-counts[1:], kind="stable")[:MAX_LEVELS]
    lookup = np.full(counts.size, len(top), dtype=np.intp)  # "other"
    lookup[top + 1] = np.arange(len(top))
    lookup[0] = len(top) + 1  # "missing"
    return lookup[codes + 1], len(top) + 2


def _compare(
    sums: ColumnSums, sw: FloatArray, sw2: FloatArray, arm: int, control: int
) -> tuple[float, int, float]:
    """Wald chi-square, its degrees of freedom and the effect size of ``arm`` vs ``control``."""
    mean_arm = sums.swz[arm] / sw[arm]
    mean_control = sums.swz[control] / sw[control]
    centre = (mean_arm + mean_control) / 2
    difference = mean_arm - mean_control

    def about_centre(weight: float, wz: FloatArray, wzz: FloatArray) -> FloatArray:
        """sum weight (z - centre)(z - centre)' from the sums of weight, weight z, weight z z'."""
        cross = np.outer(wz, centre)
        return wzz - cross - cross.T + weight * np.outer(centre, centre)

    variance = about_centre(sw2[arm], sums.sw2z[arm], sums.sw2zz[arm]) / sw[arm] ** 2
    variance += about_centre(sw2[control], sums.sw2z[control], sums.sw2zz[control]) / (
        sw[control] ** 2
    )
    scale = (
        about_centre(sw[arm], sums.swz[arm], sums.swzz[arm]) / sw[arm]
        + about_centre(sw[control], sums.swz[control], sums.swzz[control]) / sw[control]
    ) / 2
    # The same variance as if both arms drew from their pooled distribution (the null), for
    # arms whose own rows are too few to estimate it: an arm given only by exploration, 54
    # orders with weight 120 in a week of the closed loop, has levels seen once or never,
    # and its own variance makes chance imbalances look like p = 1e-8. The smaller of the
    # two statistics decides, so a column is refused only when both find it unbalanced.
    total = sw[arm] + sw[control]
    pooled_mean = (sums.swz[arm] + sums.swz[control]) / total
    pooled = (sums.swzz[arm] + sums.swzz[control]) / total - np.outer(pooled_mean, pooled_mean)
    null_variance = pooled * (sw2[arm] / sw[arm] ** 2 + sw2[control] / sw[control] ** 2)
    keep = (np.diag(scale) > _CONSTANT) & (np.diag(variance) > 0) & (np.diag(null_variance) > 0)
    if not keep.any():
        return 0.0, 0, 0.0
    block = np.ix_(keep, keep)
    statistic, df = min(
        _quadratic(difference[keep], variance[block]),
        _quadratic(difference[keep], null_variance[block]),
    )
    distance, _ = _quadratic(difference[keep], scale[block])
    effect = np.sqrt(distance * (1 - df / statistic)) if statistic > df else 0.0
    return statistic, df, float(effect)


def _quadratic(d: FloatArray, matrix: FloatArray) -> tuple[float, int]:
    """``d' M^+ d`` and the rank of ``M`` (symmetric, positive semi-definite, positive diagonal)."""
    root = np.sqrt(np.diag(matrix))
    values, vectors = np.linalg.eigh(matrix / np.outer(root, root))
    kept = values > _RANK_TOLERANCE * values.max()
    projected = vectors[:, kept].T @ (d / root)
    return float(np.sum(projected**2 / values[kept])), int(kept.sum())
