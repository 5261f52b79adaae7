"""Allow ``python -m uplift``."""

from uplift.cli import command

command()
