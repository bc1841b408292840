"""python -m collector: the same as the ledger-collector command."""

from collector.cli import main

if __name__ == "__main__":
    main()
