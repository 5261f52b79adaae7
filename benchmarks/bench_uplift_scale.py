"""Is the blend's uplift too small or too large, and can held-out data tell?

At effect scale 0.2 the default (``s_blend``) keeps less of the oracle's net value than at
full scale (``results/grid.md``). One reason could be the scale of its uplift: regularised
trees and a penalised linear model shrink small effects towards zero, and the policy treats an
order only when uplift x order value exceeds the arm's cost. This benchmark measures, per
arm, the slope of the true uplift on the blend's predicted uplift over the grid's 100,000 fresh
test orders,

    slope_a = cov(true_a, predicted_a) / var(predicted_a)

(1: the spread is right; above 1: the predictions are too flat), and the true share of the
oracle's net value when every arm's uplift is rescaled about its mean by that slope (an oracle:
it uses the truth). Then what the training log itself can estimate: the same slope from the
cross-fitted folds that selection has (the blend's held-out uplift against the doubly robust
pseudo-outcomes, the regression behind the "best linear predictor" of heterogeneous effects),
with its standard error (sandwich), and the share with the estimated slopes (clipped at 0).
Same logs, seeds and test orders as ``bench_models.py --part grid``.

    .venv/bin/python benchmarks/bench_uplift_scale.py [--grid-seeds 5] [--grid-cells ...]

Writes ``benchmarks/results/uplift-scale.md`` and ``uplift-scale.csv``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from bench_models import (
    SCALED,
    OrderTask,
    grid_parser,
    markdown,
    over_grid,
    results_head,
    spread_by_cell,
    write_grid_results,
)
from bench_stacking import MEMBERS, pseudo_outcomes

from uplift.models.select import cross_fit
from uplift.models.uplift_model import fit_models

BLEND = "s_blend"


def slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of ``y`` on ``x`` (with an intercept) and its sandwich error."""
    xc = x - x.mean()
    b = float(xc @ (y - y.mean()) / (xc @ xc))
    residual = y - y.mean() - b * xc
    return b, float(np.sqrt(((xc * residual) ** 2).sum()) / (xc @ xc))


def rescaled(uplift: pd.DataFrame, slopes: dict[str, float]) -> pd.DataFrame:
    """Every arm's uplift stretched about its mean by its slope."""
    mean = uplift.mean()
    return mean + (uplift - mean) * pd.Series(slopes)


def cell(world: str, orders: int, seed: int, test_orders: int) -> dict[str, Any]:
    task = OrderTask.of_grid(world, orders, seed, test_orders)
    model = fit_models(task.train, BLEND, seed).model()
    blend = model.predict_effects(task.X_test).uplift("retained")
    arms = list(blend.columns)
    # Selection's folds hold the blend joined from its members, as auto scores it.
    fit = cross_fit(task.train, (BLEND, *MEMBERS), seed=seed, progress=lambda _: None)
    held = fit.effects[BLEND].uplift(fit.outcome)
    pseudo = pseudo_outcomes(fit)
    oracle = {a: slope(blend[a].to_numpy(), task.true[a].to_numpy())[0] for a in arms}
    estimated = {a: slope(held[a].to_numpy(), pseudo[:, j]) for j, a in enumerate(arms)}

    row: dict[str, Any] = {"world": world, "orders": orders, "seed": seed}
    row["share"] = task.share(blend)
    row["share, oracle slopes"] = task.share(rescaled(blend, oracle))
    row["share, estimated slopes"] = task.share(
        rescaled(blend, {a: max(b, 0.0) for a, (b, _) in estimated.items()})
    )
    for a in arms:
        row[f"oracle slope {a}"] = oracle[a]
        row[f"estimated slope {a}"], row[f"se {a}"] = estimated[a]
    return row


def main(argv: Sequence[str] | None = None) -> None:
    args = grid_parser(__doc__.splitlines()[0], f"{SCALED.name}:200000").parse_args(argv)
    started = time.time()
    frame = over_grid(args, cell)
    shares = ["share", "share, oracle slopes", "share, estimated slopes"]
    slopes = [c for c in frame.columns if c.startswith(("oracle slope", "estimated slope", "se "))]
    per_seed = frame[["world", "orders", "seed", *shares]].round(1)
    mean = frame.groupby(["world", "orders"], sort=False)[shares].mean()
    spread = spread_by_cell(frame, slopes, 2)
    spread.index = [f"{world}, {orders:,} orders" for world, orders in spread.index]
    spread = spread.T
    text = "\n\n".join(
        [
            *results_head("The scale of the blend's uplift: oracle and estimated slopes", started),
            "\n\n".join(__doc__.split("\n\n")[1:4]),
            "True share (%) of the oracle's net value per seed: the blend as it predicts, "
            "rescaled by the oracle slopes, rescaled by the estimated slopes:",
            markdown(per_seed),
            "Mean over seeds:",
            markdown(mean[shares].round(1).reset_index()),
            "Slopes per arm, mean over seeds (min to max); `se` is the estimated slope's "
            "standard error:",
            markdown(spread.reset_index(names="slope")),
        ]
    )
    write_grid_results(args, "uplift-scale", text, frame)


if __name__ == "__main__":
    main()
