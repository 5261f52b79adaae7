"""The learners ``--learner`` can name, and how each is built (the class defaults are the
package's measured settings, see :mod:`uplift.models.learners`)."""

from __future__ import annotations

from collections.abc import Callable

from uplift.exceptions import check_option
from uplift.models.base import BaseUpliftModel
from uplift.models.blend import BlendLearner

# The adapters import causalml and econml themselves, on first fit: cheap to import here.
from uplift.models.causalml_adapters import CausalMLLearner
from uplift.models.econml_adapters import EconMLLearner
from uplift.models.learners import DRLearner, SLearner, TLearner
from uplift.models.linear import LinearLearner

__all__ = [
    "AUTO",
    "BLEND_MEMBERS",
    "DEFAULT_CANDIDATES",
    "LEARNERS",
    "make_learner",
    "t_learner",
]

AUTO = "auto"
#: What ``auto`` compares by default. The first is the default, kept unless another is clearly
#: better (see :mod:`uplift.models.select`): our bagged S-learner, the best learner of the
#: benchmark grid at 20,000 orders. The linear S-learner ranks best on Hillstrom's e-mails.
#: ``s_blend``, the mean of the two, keeps the most of the oracle's net value on the grid as a
#: whole and in every cell of 200,000 orders, but 2.5 to 3.2 points less than the S-learner at
#: 20,000 (``benchmarks/results/grid.md``), and its linear half adds to the time and memory of
#: ``train`` and ``predict`` at a million orders: a learner to name with ``--learner`` for
#: large logs, not the default. causalml's X-learner and our T-learner trailed the S-learner in
#: the grid, and each would add a fifth to the time of ``train`` at a million orders; our
#: DR-learner fits one effect model per arm on every order.
DEFAULT_CANDIDATES: tuple[str, ...] = ("s_lgbm", "s_linear")
#: The learners whose equal mean a blend is (:mod:`uplift.models.blend`).
BLEND_MEMBERS: dict[str, tuple[str, ...]] = {"s_blend": ("s_lgbm", "s_linear")}


def t_learner(seed: int) -> TLearner:
    """Our T-learner with the package's settings (also the outcome model of validation)."""
    return TLearner(random_state=seed)


def _ours(cls: type[BaseUpliftModel]) -> Callable[[int], BaseUpliftModel]:
    return lambda seed: cls(random_state=seed)


def _causalml(kind: str) -> Callable[[int], BaseUpliftModel]:
    def build(seed: int) -> BaseUpliftModel:
        return CausalMLLearner(kind=kind, random_state=seed)

    return build


def _econml(kind: str) -> Callable[[int], BaseUpliftModel]:
    def build(seed: int) -> BaseUpliftModel:
        return EconMLLearner(kind=kind, random_state=seed)

    return build


_BUILDERS: dict[str, Callable[[int], BaseUpliftModel]] = {
    "t_lgbm": t_learner,
    "s_lgbm": _ours(SLearner),
    "dr_lgbm": _ours(DRLearner),
    # Deterministic (lbfgs / a direct solve): the seed has nothing to choose.
    "s_linear": lambda _seed: LinearLearner(),
    "s_blend": _ours(BlendLearner),
    **{f"causalml_{k}": _causalml(k) for k in ("t", "s", "x", "r", "dr")},
    **{f"econml_{k}": _econml(k) for k in ("dr", "forest")},
}

#: Every learner name ``--learner`` accepts besides ``auto``.
LEARNERS: tuple[str, ...] = tuple(_BUILDERS)


def make_learner(name: str, seed: int = 0) -> BaseUpliftModel:
    """A fresh, unfitted learner called ``name`` (see :data:`LEARNERS`)."""
    check_option("learner", name, LEARNERS)
    return _BUILDERS[name](seed)
