"""The learn loop: the DuckDB store, the weekly job and the demo that runs it week by week."""
