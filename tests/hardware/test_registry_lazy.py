"""Creating one driver loads that driver's module only (memory on a small device)."""

from __future__ import annotations

import subprocess
import sys


def test_a_serial_driver_does_not_load_pymodbus() -> None:
    code = (
        "import sys, hardware\n"
        "hardware.create('jbd-bms', {'port': '/dev/null'}).close()\n"
        "assert 'pymodbus' not in sys.modules, 'pymodbus loaded for a UART driver'\n"
        "hardware.create('arc-monitor', {'port': '/dev/null'}).close()\n"
        "assert 'pymodbus' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
