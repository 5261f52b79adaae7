"""Uplift models: one fit/predict contract, our own learners, causalml and econml adapters.

``train_uplift(log)`` gives an :class:`UpliftModel` whose ``predict_effects`` returns retained
and revenue uplift per order and treatment arm; ``save_model`` / ``load_model`` persist it with
its model card.
"""

from uplift.models.base import BaseUpliftModel
from uplift.models.bundle import UpliftModel, train_uplift
from uplift.models.catalog import AUTO, DEFAULT_CANDIDATES, LEARNERS, make_learner
from uplift.models.learners import DRLearner, TLearner
from uplift.models.persist import ModelVersionWarning, load_model, read_card, save_model
from uplift.models.select import Selection

__all__ = [
    "AUTO",
    "DEFAULT_CANDIDATES",
    "LEARNERS",
    "BaseUpliftModel",
    "DRLearner",
    "ModelVersionWarning",
    "Selection",
    "TLearner",
    "UpliftModel",
    "load_model",
    "make_learner",
    "read_card",
    "save_model",
    "train_uplift",
]
