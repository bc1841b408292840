"""Command line entry point (filled in by its own issue)."""

import sys


def main() -> None:
    print("not yet", file=sys.stderr)
    sys.exit(2)
