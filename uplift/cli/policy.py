"""`uplift rank`."""

from __future__ import annotations

from uplift.cli.app import app, not_built


@app.command(help="Rank pending orders into a queue by net value, within capacity and budget.")
def rank() -> None:
    not_built("rank")
