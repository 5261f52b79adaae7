"""`uplift train`, `uplift evaluate`, `uplift predict`."""

from __future__ import annotations

from uplift.cli.app import app, not_built


@app.command(help="Fit an uplift model on an experiment log and save it with its model card.")
def train() -> None:
    not_built("train")


@app.command(help="Evaluate a saved model on a log: Qini, AUUC, calibration, policy value.")
def evaluate() -> None:
    not_built("evaluate")


@app.command(help="Predict retained and revenue uplift per order and arm.")
def predict() -> None:
    not_built("predict")
