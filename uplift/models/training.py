"""Training the uplift model of a log: ``auto`` selection, the fit, the risk model beside it,
and what the card records."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from uplift.data.causes import family_of
from uplift.data.log import ExperimentLog
from uplift.exceptions import ConfigError, check_option
from uplift.models.catalog import (
    AUTO,
    DEFAULT_CANDIDATES,
    LEARNERS,
    OWN_LEARNERS,
    takes_directions,
)
from uplift.models.directions import check_directions, direction_words
from uplift.models.learners import quiet_lightgbm
from uplift.models.risk import fit_risk, no_risk_reason
from uplift.models.select import select_learner
from uplift.models.uplift_model import UpliftModel, fit_models, model_inputs

__all__ = ["data_hash", "train_uplift"]

Progress = Callable[[str], None]


def data_hash(log: ExperimentLog) -> str:
    """SHA-256 of the log's canonical frame (values and column names)."""
    digest = hashlib.sha256(",".join(map(str, log.frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(log.frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def train_uplift(
    log: ExperimentLog,
    learner: str = AUTO,
    costs: Mapping[str, float] | None = None,
    seed: int = 0,
    *,
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES,
    validate: bool = False,
    progress: Progress | None = None,
    causes: Mapping[str, Sequence[str]] | None = None,
    directions: Mapping[str, str] | None = None,
) -> UpliftModel:
    """Fit the uplift model of ``log`` with ``learner`` (``auto`` chooses by validation).

    ``costs`` (currency per use of an arm, missing arms cost 0) enter the choice of ``auto``:
    it picks the learner whose policy (best net value per order) has the highest doubly robust
    value on held-out orders (see :mod:`uplift.models.select`). With ``validate`` a named
    learner is scored the same way, so its card holds held-out figures too. ``progress``
    receives a short line before each step.

    Beside the uplift models, a log with a 0/1 outcome gets a risk model (see
    :mod:`uplift.models.risk`): P(cancelled | no action, x), calibrated, and the family of
    causes of every order's risk; ``causes`` maps families to columns (the project's
    ``[causes]``, e.g. ``{"payment": ["psp_status"]}``), None for the default map.

    ``directions`` (numeric input -> "up" or "down": the way it moves the chance an order is
    kept) hold for the tree models of the learners that take them and for the risk model
    (:mod:`uplift.models.directions`); a named learner that takes none is a ConfigError.
    """
    check_option("learner", learner, (AUTO, *LEARNERS))
    for name in candidates:
        check_option("candidate learner", name, LEARNERS)
    costs = check_costs(costs, log)
    signs = check_directions(directions, log.frame, model_inputs(log), log.source)
    if signs and learner != AUTO and not takes_directions(learner):
        raise ConfigError(
            f"directions: learner {learner} does not take known directions; "
            f"{', '.join(n for n in LEARNERS if takes_directions(n))} do (auto chooses among them)"
        )
    family_of(model_inputs(log), causes)  # a wrong [causes] map fails before any fit
    say = progress or (lambda _: None)
    absent = no_risk_reason(log)
    scored = candidates if learner == AUTO else (learner,) if validate else ()
    # The risk model and the data's digest need nothing of the uplift models: a thread fits and
    # computes them beside selection and fit (LightGBM releases the GIL), on the core time the
    # uplift boosters leave idle. Each booster keeps its own thread count, so the numbers are
    # those of one step after the other. Only beside our own learners, whose LightGBM calls all
    # run on one thread (OWN_LEARNERS); causalml's and econml's set other counts. One warnings
    # context around both threads: the filters are process-wide, and the side thread ends
    # inside it.
    fitted_ones = scored if learner == AUTO else (learner,)
    risk_beside = absent is None and set(fitted_ones) <= set(OWN_LEARNERS)
    risk = None
    with quiet_lightgbm(), ThreadPoolExecutor(1) as beside:
        digest = beside.submit(data_hash, log)
        risk_fit = None
        if risk_beside:
            say("fitting the risk model on the control orders (beside the uplift models)")
            risk_fit = beside.submit(fit_risk, log, model_inputs(log), seed, causes, signs)
        selection = None
        if scored:
            selection = select_learner(
                log, scored, costs=costs, seed=seed, progress=say, directions=signs
            )
            learner = selection.chosen
        say(f"fitting {learner} on {len(log):,} orders")
        fitted = fit_models(log, learner, seed, signs)
        if risk_fit is not None:
            risk = risk_fit.result()
        elif absent is None:
            say("fitting the risk model on the control orders")
            risk = fit_risk(log, model_inputs(log), seed, causes, signs)
        training = {
            "source": log.source,
            "orders": len(log),
            "data_hash": digest.result(),
            "propensity_given": log.propensity_given,
            "notes": list(log.notes),
            "costs": costs,
            "seed": seed,
        }
        if signs:
            training["directions"] = direction_words(signs)
    if absent is not None:
        training["risk_absent"] = absent
    return fitted.model(selection=selection, training=training, risk_model=risk)


def check_costs(costs: Mapping[str, float] | None, log: ExperimentLog) -> dict[str, float]:
    """Costs per treatment arm as floats; unknown arms or negative costs are a ConfigError."""
    costs = dict(costs or {})
    unknown = sorted(set(costs) - set(log.arms))
    if unknown:
        raise ConfigError(
            f"costs name arm(s) {', '.join(unknown)} that {log.source} does not have; "
            f"arms: {', '.join(log.arms)}"
        )
    bad = {arm: c for arm, c in costs.items() if not (np.isfinite(c) and c >= 0)}
    if bad:
        raise ConfigError(f"costs must be finite numbers >= 0; got {bad}")
    if any(costs.values()) and not log.has_revenue:
        # Refused, not dropped: a cost in currency cannot be set against a retention rate.
        raise ConfigError(
            f"{log.source}: costs are given (--cost) but the log has neither revenue nor an "
            "order value to set them against; give every order a value with --order-value 10, "
            "or map a column with --map order_value=COLUMN"
        )
    return {arm: float(c) for arm, c in costs.items()}
