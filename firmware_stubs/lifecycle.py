"""What every emulator shares: ``with Emulator(...) as device:`` starts it and stops it."""

from __future__ import annotations

from typing import Self

__all__ = ["Lifecycle"]


class Lifecycle:
    """Context-manager plumbing over a subclass's ``start`` and ``stop``."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
