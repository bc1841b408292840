"""The live demo: a private broker, a collector, five agents on emulated devices, an audit."""
