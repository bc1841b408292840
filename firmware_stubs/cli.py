"""Command-line plumbing shared by the emulators (``python -m firmware_stubs.<device>``).

Each emulator prints the serial port the agent should open as the **first line on stdout**
(so scripts can read it) and a description on stderr, then runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .clock import SimClock

__all__ = ["announce", "base_parser", "clock_from", "wait_for_signal"]


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", help="serial device to speak on (e.g. /dev/ttyUSB1, or one "
                        "end of a socat pair); default: create a pseudo-terminal and print "
                        "its path")
    parser.add_argument("--seed", type=int, default=1, help="signal seed (default 1)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulated seconds per real second (default 1)")
    parser.add_argument("--step", type=float, default=None,
                        help="instead of --speed: advance simulated time this many seconds "
                        "per request (reproducible runs)")
    parser.add_argument("--log", help="append what the device sends, as JSON lines, here")
    return parser


def clock_from(args: argparse.Namespace) -> SimClock:
    return SimClock(speed=args.speed, step=args.step)


def announce(path: str, what: str, seed: int) -> None:
    print(path, flush=True)
    print(f"{what} emulator (seed {seed}) on {path}; Ctrl-C to stop", file=sys.stderr,
          flush=True)


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    done = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not done.wait(0.5):
        pass
