"""The risk model judged on a log: is the predicted risk calibrated, and is the cause right?

On any log, the risk is checked against what the control arm's orders did (the risk is the
probability of cancelling without action, so only orders left without action can judge it),
weighted by 1 / propensity as the model was fitted. With the simulator's truth, the risk is
also checked against every order's true probability of cancelling under control, and the
cause against the true cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from uplift.data.log import ExperimentLog
from uplift.exceptions import SchemaError
from uplift.models.calibration import expected_calibration_error, reliability
from uplift.models.uplift_model import UpliftModel

__all__ = ["RiskCheck", "check_risk"]


@dataclass(frozen=True, eq=False)
class RiskCheck:
    """Raw numbers of the check (rendering is the caller's).

    Attributes
    ----------
    reliability : DataFrame
        The control orders in equal-count bins of predicted risk: ``mean_predicted``,
        ``observed`` (their cancellation rate), ``orders``, ``weight``.
    ece : float
        Expected calibration error of that curve.
    causes : DataFrame
        Per cause: ``orders``, ``share``, ``mean_risk``, over all the log's orders.
    truth_ece : float or None
        Calibration error against the true probabilities, all orders (with truth only).
    agreement_above_median, agreement_all : float or None
        Share of orders whose ``cause`` is the true cause, among those above the median
        predicted risk and among all (with truth only).
    """

    reliability: pd.DataFrame
    ece: float
    causes: pd.DataFrame
    truth_ece: float | None = None
    agreement_above_median: float | None = None
    agreement_all: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for ``--json``."""
        return {
            "reliability": self.reliability.to_dict(orient="records"),
            "ece": self.ece,
            "causes": self.causes.to_dict(orient="records"),
            "truth_ece": self.truth_ece,
            "agreement_above_median": self.agreement_above_median,
            "agreement_all": self.agreement_all,
        }


def check_risk(
    model: UpliftModel, log: ExperimentLog, truth: pd.DataFrame | None = None
) -> RiskCheck:
    """Check ``model``'s risk on ``log`` (and against ``truth``: ``order_id``,
    ``p_cancel_<control>``, ``true_cause``, as the simulator writes it)."""
    if not log.has_retained:
        raise SchemaError(f"{log.source}: no 0/1 outcome to check the risk against")
    risk = model.predict_risk(log.frame)
    predicted = risk["risk"].to_numpy()
    control = (log.frame["arm"] == log.control).to_numpy()
    weight = 1.0 / log.frame["propensity"].to_numpy()[control]
    cancelled = 1.0 - log.frame["retained"].to_numpy(dtype=float)[control]
    curve = reliability(predicted[control], cancelled, weight)
    causes = (
        risk.groupby("cause", observed=True)["risk"]
        .agg(orders="size", mean_risk="mean")
        .reset_index()
        .assign(share=lambda t: t["orders"] / len(risk))
    )
    check = RiskCheck(curve, expected_calibration_error(curve), causes)
    if truth is None:
        return check
    rows = _truth_rows(truth, log, model.control)
    truth_curve = reliability(predicted, rows[f"p_cancel_{model.control}"].to_numpy())
    agree = risk["cause"].astype(str).to_numpy() == rows["true_cause"].astype(str).to_numpy()
    above = predicted >= np.median(predicted)
    return RiskCheck(
        curve,
        check.ece,
        causes,
        truth_ece=expected_calibration_error(truth_curve),
        agreement_above_median=float(agree[above].mean()),
        agreement_all=float(agree.mean()),
    )


def _truth_rows(truth: pd.DataFrame, log: ExperimentLog, control: str) -> pd.DataFrame:
    """The truth's rows of the log's orders, in the log's order."""
    wanted = ["order_id", f"p_cancel_{control}", "true_cause"]
    missing = [c for c in wanted if c not in truth.columns]
    if missing:
        raise SchemaError(
            f"truth: no column(s) {', '.join(missing)}; a truth file of `uplift simulate` has them"
        )
    by_id = truth[wanted].set_index("order_id")
    ids = log.frame["order_id"]
    absent = ~ids.isin(by_id.index).to_numpy()
    if absent.any():
        raise SchemaError(f"truth: no truth for {int(absent.sum()):,} of the log's orders")
    return by_id.loc[ids].reset_index()
