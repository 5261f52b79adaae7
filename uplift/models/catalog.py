"""The learners ``--learner`` can name, and how each is built (the class defaults are the
package's measured settings, see :mod:`uplift.models.learners`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from uplift.exceptions import check_option
from uplift.models.base import BaseUpliftModel
from uplift.models.blend import BlendLearner

# The adapters import causalml and econml themselves, on first fit: cheap to import here.
from uplift.models.causalml_adapters import CausalMLLearner
from uplift.models.econml_adapters import EconMLLearner
from uplift.models.learners import DRLearner, LightGBMLearner, SLearner, TLearner
from uplift.models.linear import LinearLearner

__all__ = [
    "AUTO",
    "BLEND_MEMBERS",
    "DEFAULT_CANDIDATES",
    "LEARNERS",
    "OWN_LEARNERS",
    "make_learner",
    "t_learner",
    "takes_directions",
]

AUTO = "auto"
#: What ``auto`` compares by default. The first is the default, kept unless another is clearly
#: better (see :mod:`uplift.models.select`): ``s_blend``, the equal mean of our bagged S-learner
#: (its uplift stretched on large logs) and the linear S-learner. Neither member is better
#: everywhere: on the benchmark grid (``benchmarks/results/grid.md``, 5 seeds per cell) the
#: S-learner leads at 20,000 orders, the linear one by 3-10 points at 200,000, and which one is
#: better in a given log changes from seed to seed by up to 15 points. Held-out data cannot tell
#: them apart at these effect sizes: the doubly robust loss that would weigh them estimates the
#: S-learner's weight at 0.1 to 2.19 on average per cell, with standard errors of 1.13 to 4.41, on a
#: scale of 0 to 1 (``benchmarks/results/stacking.md``). So the weights stay equal (the classic
#: forecast combination), and the blend loses less to the truly better member, on average, than
#: either member alone (0.02 points against 4.97 and 3.72: ``grid.md``, ``stacking.md``).
#: The members are candidates too, chosen alone only when clearly better. causalml's X-learner
#: and our T-learner trailed the S-learner in the grid, and each would add a fifth to the time
#: of ``train`` at a million orders; our DR-learner fits one effect model per arm on every
#: order.
DEFAULT_CANDIDATES: tuple[str, ...] = ("s_blend", "s_lgbm", "s_linear")
#: The learners whose equal mean a blend is (:mod:`uplift.models.blend`).
BLEND_MEMBERS: dict[str, tuple[str, ...]] = {"s_blend": ("s_lgbm", "s_linear")}


def t_learner(seed: int) -> TLearner:
    """Our T-learner with the package's settings (also the outcome model of validation)."""
    return TLearner(random_state=seed)


def _ours(cls: type[LightGBMLearner]) -> Callable[[int], BaseUpliftModel]:
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
#: Our own learners: each of their LightGBM calls runs on one thread (``N_JOBS``), so other
#: LightGBM work may run beside them (LightGBM keeps its thread count process-wide, and two
#: calls that set different counts at once can crash it).
OWN_LEARNERS: tuple[str, ...] = tuple(
    name for name in LEARNERS if not name.startswith(("causalml_", "econml_"))
)


def make_learner(
    name: str, seed: int = 0, directions: Mapping[str, int] | None = None
) -> BaseUpliftModel:
    """A fresh, unfitted learner called ``name`` (see :data:`LEARNERS`), with the known
    ``directions`` (column -> 1 or -1) when it takes them (:func:`takes_directions`)."""
    check_option("learner", name, LEARNERS)
    model = _BUILDERS[name](seed)
    if directions and takes_directions(name):
        model.set_params(directions=dict(directions))
    return model


def takes_directions(name: str) -> bool:
    """Whether learner ``name`` holds its tree models to known directions: our tree learners
    and the blend (its trees); not the linear learner, causalml's or econml's."""
    return "directions" in _BUILDERS[name](0).get_params()
