"""``python -m firmware_stubs <device> [options]``: run one device emulator."""

from .cli import main

main()
