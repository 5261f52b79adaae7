"""`uplift ingest`, `uplift weekly`."""

from __future__ import annotations

from uplift.cli.app import app, not_built


@app.command(help="Append a week's experiment log to the store (idempotent by order_id).")
def ingest() -> None:
    not_built("ingest")


@app.command(help="The weekly job: ingest, read out, retrain, check, rank, write the report.")
def weekly() -> None:
    not_built("weekly")
