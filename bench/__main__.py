"""``python -m bench``: see bench/cli.py."""

from .cli import main

main()
