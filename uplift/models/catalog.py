"""The learners ``--learner`` can name, and how each is built with the package's settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from uplift.exceptions import check_option
from uplift.models.base import BaseUpliftModel
from uplift.models.learners import DRLearner, SLearner, TLearner

# LightGBM settings of every learner: shallow trees. Uplift is a small difference of two noisy
# outcome models, so shallow trees recover it better than deep ones (on the simulated order
# world at 60,000 orders the T-learner's correlation with the true uplift rose from 0.25-0.58
# with 31 leaves to 0.43-0.80 with 7). 75 trees at rate 0.1 matched 150 at 0.05 (mean
# correlation 0.535 against 0.534 at 40,000 orders) at half the cost of predicting a million
# orders, which is what bounds the trees: every order passes through every arm's trees.
N_ESTIMATORS = 75
LEARNING_RATE = 0.1
NUM_LEAVES = 7
MIN_CHILD_SAMPLES = 200
# One thread: on a shared 2-core machine LightGBM's second thread mostly waits for a core
# (measured: a T-learner fit took 0.7-1.2 s with one thread and 1.3-2.5 s with two).
N_JOBS = 1

AUTO = "auto"
#: What ``auto`` compares by default: our S- and T-learners and causalml's X-learner, all cheap
#: (our DR-learner fits one effect model per arm on every order: several times their cost).
DEFAULT_CANDIDATES: tuple[str, ...] = ("s_lgbm", "t_lgbm", "causalml_x")


def _settings(seed: int) -> dict[str, Any]:
    """The package's LightGBM settings, shared by every learner."""
    return {
        "n_estimators": N_ESTIMATORS,
        "learning_rate": LEARNING_RATE,
        "num_leaves": NUM_LEAVES,
        "min_child_samples": MIN_CHILD_SAMPLES,
        "n_jobs": N_JOBS,
        "random_state": seed,
    }


def t_learner(seed: int) -> TLearner:
    """Our T-learner with the package's settings (also the outcome model of validation)."""
    return TLearner(**_settings(seed))


def _ours(cls: type[BaseUpliftModel]) -> Callable[[int], BaseUpliftModel]:
    return lambda seed: cls(**_settings(seed))


def _causalml(kind: str) -> Callable[[int], BaseUpliftModel]:
    def build(seed: int) -> BaseUpliftModel:
        # Imported on use: causalml takes seconds to import.
        from uplift.models.causalml_adapters import CausalMLLearner

        return CausalMLLearner(kind=kind, **_settings(seed))

    return build


def _econml(kind: str) -> Callable[[int], BaseUpliftModel]:
    def build(seed: int) -> BaseUpliftModel:
        from uplift.models.econml_adapters import EconMLLearner

        return EconMLLearner(kind=kind, **_settings(seed))

    return build


_BUILDERS: dict[str, Callable[[int], BaseUpliftModel]] = {
    "t_lgbm": t_learner,
    "s_lgbm": _ours(SLearner),
    "dr_lgbm": _ours(DRLearner),
    **{f"causalml_{k}": _causalml(k) for k in ("t", "s", "x", "r", "dr")},
    **{f"econml_{k}": _econml(k) for k in ("dr", "forest")},
}

#: Every learner name ``--learner`` accepts besides ``auto``.
LEARNERS: tuple[str, ...] = tuple(_BUILDERS)


def make_learner(name: str, seed: int = 0) -> BaseUpliftModel:
    """A fresh, unfitted learner called ``name`` (see :data:`LEARNERS`)."""
    check_option("learner", name, LEARNERS)
    return _BUILDERS[name](seed)
