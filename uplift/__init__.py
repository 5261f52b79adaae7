"""uplift: order-cancellation prevention, from experiment logs to decisions and back.

The public API is every name in ``__all__``, importable from ``uplift`` itself, stage by
stage: data in (the canonical log, the simulated order world, public data sets), holdout tests
(design, assignment, readout, metrics, off-policy values), models (train, predict
:class:`Effects`, evaluate, persist), the policy (rank orders within capacity), the weekly
report and the learn loop. Names are loaded on first use, so that ``import uplift`` and the
command line start in a fraction of a second instead of importing every library up front.
"""

from __future__ import annotations

import importlib
from typing import Any

from uplift._version import __version__

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ("ConfigError", "ModelLoadError", "SchemaError", "StoreError", "UpliftError"),
        "uplift.exceptions",
    ),
    # data
    **dict.fromkeys(("ColumnMap", "ExperimentLog", "read_frame", "read_log"), "uplift.data.log"),
    **dict.fromkeys(
        (
            "ARM_COSTS",
            "ARMS",
            "CONTROL",
            "FEATURES",
            "TREATMENT_ARMS",
            "WORLDS",
            "SimulatedWorld",
            "World",
            "explained_share",
            "pending_orders",
            "simulate",
            "true_revenue_uplift",
            "true_uplift",
        ),
        "uplift.data.simulate",
    ),
    **dict.fromkeys(("hillstrom_log", "load_hillstrom", "load_ihdp"), "uplift.data.datasets"),
    **dict.fromkeys(("Project", "Words", "load_project"), "uplift.data.project"),
    **dict.fromkeys(("LeakCheck", "check_leaks", "refuse_leaks"), "uplift.data.leaks"),
    "split_log": "uplift.data.split",
    "simulate_outcomes": "uplift.data.outcomes",
    **dict.fromkeys(("write_json", "write_table"), "uplift.data.files"),
    # experiment
    **dict.fromkeys(("achieved_power", "effect_size"), "uplift.experiment.power"),
    **dict.fromkeys(("Design", "baselines_from_log", "plan_design"), "uplift.experiment.design"),
    **dict.fromkeys(("assign_arms", "hash_unit"), "uplift.experiment.assignment"),
    "check_sample_ratio": "uplift.experiment.sample_ratio",
    **dict.fromkeys(("PolicyReadout", "read_out_policy"), "uplift.experiment.holdout"),
    **dict.fromkeys(("Readout", "readout"), "uplift.experiment.readout"),
    **dict.fromkeys(
        ("auuc", "qini_coefficient", "qini_curve", "qini_interval", "sqrt_pehe", "uplift_at_k"),
        "uplift.experiment.metrics",
    ),
    "uplift_metrics_by_arm": "uplift.experiment.metrics",
    **dict.fromkeys(
        ("PolicyComparison", "baseline_policies", "compare_policies", "policy_value"),
        "uplift.experiment.offpolicy",
    ),
    # models
    **dict.fromkeys(
        (
            "LEARNERS",
            "Effects",
            "UpliftModel",
            "compare_models",
            "evaluate_model",
            "explain_arms",
            "load_model",
            "make_learner",
            "oracle_policy",
            "RiskModel",
            "save_model",
            "train_uplift",
            "true_effects",
        ),
        "uplift.models",
    ),
    # policy
    **dict.fromkeys(("RiskCheck", "check_risk"), "uplift.models.risk_check"),
    **dict.fromkeys(("Assignment", "rank_orders"), "uplift.policy"),
    **dict.fromkeys(("pending_payment_rule", "treat_all", "treat_none"), "uplift.policy.baselines"),
    # reports
    **dict.fromkeys(("WeeklyReport", "read_report", "save_report"), "uplift.reports"),
    "progress_bar": "uplift.reports.progress",
    **dict.fromkeys(("learn_check", "qini_points"), "uplift.reports.measures"),
    **dict.fromkeys(
        (
            "arm_effects_plot",
            "base_rate_plot",
            "calibration_plot",
            "capacity_plot",
            "loop_plot",
            "policy_value_plot",
            "qini_plot",
            "truth_plot",
        ),
        "uplift.reports.plots",
    ),
    # loop
    "Store": "uplift.loop.store",
    **dict.fromkeys(("WeeklyConfig", "WeeklyJob", "run_weekly"), "uplift.loop.weekly"),
    **dict.fromkeys(("reverse_arm", "run_demo"), "uplift.loop.demo"),
    "score_week": "uplift.loop.truth",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'uplift' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
