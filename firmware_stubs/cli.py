"""The one command line of every emulator: ``python -m firmware_stubs <device> [options]``.

``python -m firmware_stubs.<device> [options]`` is the same command for one device. An
emulator prints the serial port the agent should open as the **first line on stdout** (so
scripts can read it) and a description on stderr, then runs until SIGINT or SIGTERM.

Each emulator module declares only what is its own, as an :class:`EmulatorCommand`: its
options and how to build it from them. The options every emulator takes (``--port``,
``--seed``, ``--speed``, ``--step``, ``--log``) and the run itself are here, once.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Protocol, Self

from .clock import SimClock
from .transcript import Transcript

__all__ = ["EMULATORS", "EmulatorCommand", "announce", "base_parser", "clock_from", "main",
           "wait_for_signal"]

#: Device name -> the module whose ``COMMAND`` runs it (imported only when chosen).
EMULATORS = {
    "arc_monitor": "firmware_stubs.arc_monitor",
    "contec_oximeter": "firmware_stubs.contec_oximeter",
    "jbd_bms": "firmware_stubs.jbd_bms",
    "self_signing": "firmware_stubs.self_signing",
    "water_quality": "firmware_stubs.water_quality",
}


class RunningEmulator(Protocol):
    @property
    def agent_path(self) -> str: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class EmulatorCommand:
    """One emulator's part of the command line.

    ``options`` adds the device's own options; ``build`` makes the emulator from the parsed
    arguments (with the shared ``clock`` and ``transcript``) and says what it is, for the
    banner on stderr.
    """

    name: str
    description: str
    options: Callable[[argparse.ArgumentParser], None]
    build: Callable[[argparse.Namespace, SimClock, Transcript], tuple[RunningEmulator, str]]


def main(argv: Sequence[str] | None = None, *, command: EmulatorCommand | None = None) -> None:
    """Run one emulator until SIGINT or SIGTERM.

    Without ``command`` the first argument names the device (``python -m firmware_stubs``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if command is None:
        chooser = argparse.ArgumentParser(
            prog="python -m firmware_stubs", description="Run a device emulator.")
        chooser.add_argument("device", choices=sorted(EMULATORS))
        chooser.add_argument("options", nargs=argparse.REMAINDER,
                             help="the device's options (python -m firmware_stubs DEVICE -h)")
        chosen = chooser.parse_args(args[:1])
        module = importlib.import_module(EMULATORS[chosen.device])
        command = module.COMMAND
        assert isinstance(command, EmulatorCommand)
        args = args[1:]
    parser = base_parser(f"python -m firmware_stubs.{command.name}", command.description)
    command.options(parser)
    options = parser.parse_args(args)
    emulator, what = command.build(options, clock_from(options), Transcript(options.log))
    with emulator:
        announce(emulator.agent_path, what, options.seed)
        wait_for_signal()


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
