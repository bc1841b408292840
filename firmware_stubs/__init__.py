"""The device side of each wire: emulators that speak the real protocols byte for byte."""
