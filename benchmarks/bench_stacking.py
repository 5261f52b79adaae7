"""Can held-out data weigh the blend's two members? Stacking weights against fixed ones.

``auto``'s default, ``s_blend``, is the equal mean of the bagged S-learner (``s_lgbm``) and the
linear S-learner (``s_linear``). Stacking would choose the S-learner's weight ``w`` instead by
minimising the doubly robust loss on the cross-fitted folds selection already has:

    w = argmin sum_i sum_a (G_ia - w * tau_lgbm_ia - (1 - w) * tau_linear_ia)^2

where ``G_ia`` is the doubly robust pseudo-outcome of arm ``a`` against control for held-out
order ``i`` (outcome model and propensities as in selection, on the selection's outcome). This
benchmark measures, on every cell and seed of the model grid (same logs, same seeds as
``bench_models.py --part grid``): the estimated ``w`` and its standard error (sandwich, one
cluster per order); and the true share of the oracle's net value on the grid's 100,000 fresh
test orders of the blend at fixed weights 0, 0.1, ..., 1 and at the stacked weight (clipped to
0..1; also per arm, one weight per arm). The blends' effects are ``w`` times the S-learner's
uplift plus ``1 - w`` times the linear one's, both fitted on the whole training log. Regret is
the better member's share minus the blend's, per seed. Beside them, the equal blend with the
S-learner's uplift stretched about its mean per arm over the training orders by 1, 1.6, 2, 2.5
and 3 (``s_blend`` stretches by the log's size: 1 at 20,000 orders, 2 from 200,000; see
``uplift/models/blend.py``).

    .venv/bin/python benchmarks/bench_stacking.py [--grid-seeds 5] [--first-seed 0]
        [--grid-cells ...]

Writes ``benchmarks/results/stacking.md`` and ``stacking.csv`` (with ``--first-seed 10``,
``stacking-seeds-10-14.md`` and ``.csv``: the seeds the blend's stretch was chosen on).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from bench_models import (
    DEFAULT_GRID_CELLS,
    OrderTask,
    grid_parser,
    markdown,
    over_grid,
    results_head,
    write_grid_results,
)

from uplift.models.select import CrossFit, cross_fit
from uplift.models.uplift_model import fit_models

MEMBERS = ("s_lgbm", "s_linear")
WEIGHTS = np.round(np.linspace(0, 1, 11), 1)
STRETCHES = (1.0, 1.6, 2.0, 2.5, 3.0)


def pseudo_outcomes(fit: CrossFit) -> np.ndarray:
    """Doubly robust pseudo-outcome of every treatment arm against control, per held-out order."""
    first = fit.effects[MEMBERS[0]]
    control, arms = first.control, list(first.treatment_arms)
    y = fit.frame[fit.outcome].to_numpy(float)
    e = fit.frame["propensity"].to_numpy(float)
    logged = fit.frame["arm"].to_numpy()
    mu = fit.mu

    def corrected(arm: str) -> np.ndarray:
        base = mu[arm].to_numpy()
        return base + np.where(logged == arm, (y - base) / e, 0.0)

    return np.column_stack([corrected(a) - corrected(control) for a in arms])


def stacked_weight(fit: CrossFit) -> tuple[float, float, np.ndarray]:
    """The S-learner's least-squares weight over all arms, its standard error, and per arm."""
    tau = [fit.effects[m].uplift(fit.outcome).to_numpy() for m in MEMBERS]
    d = tau[0] - tau[1]
    r = pseudo_outcomes(fit) - tau[1]
    w = float((r * d).sum() / (d * d).sum())
    score = (d * (r - w * d)).sum(axis=1)  # one cluster per order: its arms together
    se = float(np.sqrt((score**2).sum()) / (d * d).sum())
    return w, se, (r * d).sum(axis=0) / (d * d).sum(axis=0)


def cell(world: str, orders: int, seed: int, test_orders: int) -> dict[str, Any]:
    task = OrderTask.of_grid(world, orders, seed, test_orders)
    fit = cross_fit(task.train, MEMBERS, seed=seed, progress=lambda _: None)
    w, se, per_arm = stacked_weight(fit)
    models = [fit_models(task.train, m, seed).model() for m in MEMBERS]
    uplift = [model.predict_effects(task.X_test).uplift("retained") for model in models]
    # The centre of the stretch: the S-learner's mean uplift over the training orders.
    centre = models[0].predict_effects(task.train.frame).uplift("retained").mean()

    def share(weight: float | np.ndarray) -> float:
        return task.share(uplift[0] * weight + uplift[1] * (1 - weight))

    row: dict[str, Any] = {"world": world, "orders": orders, "seed": seed, "w": w, "w_se": se}
    row |= {f"share w={x}": share(x) for x in WEIGHTS}
    row["share stacked"] = share(min(max(w, 0.0), 1.0))
    row["share stacked per arm"] = share(np.clip(per_arm, 0, 1))
    for stretch in STRETCHES:
        trees = centre + stretch * (uplift[0] - centre)
        blend = (trees + uplift[1]) / 2
        row[f"share stretch={stretch:g}"] = task.share(blend)
    return row


def summary(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean share per cell, and the regret of every weighting against the better member."""
    shares = [c for c in frame.columns if c.startswith("share")]
    per_cell = frame.groupby(["world", "orders"], sort=False)
    table = per_cell[shares].mean().round(1)
    table.insert(0, "w (mean)", per_cell["w"].mean().round(2))
    table.insert(1, "w se (mean)", per_cell["w_se"].mean().round(2))
    best = frame[["share w=0.0", "share w=1.0"]].max(axis=1)
    regret = pd.DataFrame(
        {
            "weighting": [c.removeprefix("share ") for c in shares],
            "mean regret": [(best - frame[c]).mean() for c in shares],
            "mean regret, seeds below the better member": [
                (best - frame[c]).clip(lower=0).mean() for c in shares
            ],
        }
    )
    return table.reset_index(), regret


def main(argv: Sequence[str] | None = None) -> None:
    args = grid_parser(__doc__.splitlines()[0], DEFAULT_GRID_CELLS).parse_args(argv)
    started = time.time()
    frame = over_grid(args, cell)
    table, regret = summary(frame)
    text = "\n\n".join(
        [
            *results_head("Stacking the blend's members: estimated against fixed weights", started),
            "\n\n".join(__doc__.split("\n\n")[1:4]),
            "Per cell, mean over seeds: the estimated weight of the S-learner, its standard "
            "error, and the true share (%) of the oracle's net value of each weighting:",
            markdown(table),
            "Regret (points of the oracle's share) against the better member of each seed, "
            "mean over all cells and seeds (negative: the blend beats both members):",
            markdown(regret),
        ]
    )
    write_grid_results(args, "stacking", text, frame)


if __name__ == "__main__":
    main()
