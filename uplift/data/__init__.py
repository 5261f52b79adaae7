"""Data in: the canonical experiment log, values read as meant, the simulated order world,
public data sets, and the file and SQL helpers every later stage writes and queries with."""
