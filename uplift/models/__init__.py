"""Uplift models: one fit/predict contract, our own learners, causalml and econml adapters.

``train_uplift(log)`` gives an :class:`UpliftModel` whose ``predict_effects`` returns retained
and revenue uplift per order and treatment arm; ``save_model`` / ``load_model`` persist it with
its model card (JSON and LightGBM text for our learners, a signed pickle for the rest).
"""

from uplift.models.base import BaseUpliftModel
from uplift.models.bundle import UpliftModel, train_uplift
from uplift.models.catalog import AUTO, DEFAULT_CANDIDATES, LEARNERS, make_learner
from uplift.models.diagnose import ArmReasons, explain_arms, segment_table
from uplift.models.evaluate import Evaluation, evaluate_model
from uplift.models.learners import DRLearner, TLearner
from uplift.models.persist import (
    ModelVersionWarning,
    load_model,
    model_digest,
    read_card,
    save_model,
)
from uplift.models.select import Selection

__all__ = [
    "AUTO",
    "DEFAULT_CANDIDATES",
    "LEARNERS",
    "ArmReasons",
    "BaseUpliftModel",
    "DRLearner",
    "Evaluation",
    "ModelVersionWarning",
    "Selection",
    "TLearner",
    "UpliftModel",
    "evaluate_model",
    "explain_arms",
    "load_model",
    "make_learner",
    "model_digest",
    "read_card",
    "save_model",
    "segment_table",
    "train_uplift",
]
