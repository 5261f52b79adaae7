"""Uplift models: one fit/predict contract, our own learners, causalml and econml adapters.

``train_uplift(log)`` gives an :class:`UpliftModel` whose ``predict_effects`` returns the
:class:`Effects` of every treatment arm on every order; ``save_model`` / ``load_model``
persist it with its model card; ``evaluate_model`` and ``compare_models`` judge models by the
policies they imply. Its ``predict_risk`` gives every order's calibrated cancellation risk
without action and the family of causes it comes from (:class:`RiskModel`).

Names load on first use (PEP 562): predicting with a saved model then imports neither
LightGBM nor scikit-learn, which fitting needs and which take a second to import.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uplift.models.base import BaseUpliftModel
    from uplift.models.catalog import AUTO, DEFAULT_CANDIDATES, LEARNERS, make_learner
    from uplift.models.contest import Verdict, compare_models, decide
    from uplift.models.diagnose import ArmReasons, explain_arms, segment_table
    from uplift.models.effects import Effects, NetValue, read_effects
    from uplift.models.evaluate import Evaluation, evaluate_model
    from uplift.models.learners import DRLearner, SLearner, TLearner
    from uplift.models.linear import LinearLearner
    from uplift.models.oracle import oracle_policy, true_effects
    from uplift.models.persist import (
        ModelVersionWarning,
        load_model,
        model_digest,
        read_card,
        save_model,
    )
    from uplift.models.risk import RiskModel
    from uplift.models.training import train_uplift
    from uplift.models.uplift_model import Selection, UpliftModel

__all__ = [
    "AUTO",
    "DEFAULT_CANDIDATES",
    "LEARNERS",
    "ArmReasons",
    "BaseUpliftModel",
    "DRLearner",
    "Effects",
    "Evaluation",
    "LinearLearner",
    "ModelVersionWarning",
    "NetValue",
    "RiskModel",
    "SLearner",
    "Selection",
    "TLearner",
    "UpliftModel",
    "Verdict",
    "compare_models",
    "decide",
    "evaluate_model",
    "explain_arms",
    "load_model",
    "make_learner",
    "model_digest",
    "oracle_policy",
    "read_card",
    "read_effects",
    "save_model",
    "segment_table",
    "train_uplift",
    "true_effects",
]

#: The module of each name.
_MODULES = {
    "AUTO": "catalog",
    "DEFAULT_CANDIDATES": "catalog",
    "LEARNERS": "catalog",
    "make_learner": "catalog",
    "Verdict": "contest",
    "compare_models": "contest",
    "decide": "contest",
    "ArmReasons": "diagnose",
    "explain_arms": "diagnose",
    "segment_table": "diagnose",
    "Effects": "effects",
    "NetValue": "effects",
    "read_effects": "effects",
    "Evaluation": "evaluate",
    "evaluate_model": "evaluate",
    "BaseUpliftModel": "base",
    "DRLearner": "learners",
    "SLearner": "learners",
    "TLearner": "learners",
    "LinearLearner": "linear",
    "oracle_policy": "oracle",
    "true_effects": "oracle",
    "ModelVersionWarning": "persist",
    "load_model": "persist",
    "model_digest": "persist",
    "read_card": "persist",
    "save_model": "persist",
    "RiskModel": "risk",
    "train_uplift": "training",
    "Selection": "uplift_model",
    "UpliftModel": "uplift_model",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next use finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
