"""Allow ``python -m uplift``."""

from uplift.cli import main

main()
