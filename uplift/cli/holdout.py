"""`uplift design`, `uplift assign`, `uplift readout`."""

from __future__ import annotations

from uplift.cli.app import app, not_built


@app.command(help="Size a holdout test: sample size, power, duration; writes design.toml.")
def design() -> None:
    not_built("design")


@app.command(help="Assign orders to arms by hash(salt, order_id), as a design says.")
def assign() -> None:
    not_built("assign")


@app.command(help="Read out a test: per-arm effects with intervals, SRM check, segments.")
def readout() -> None:
    not_built("readout")
