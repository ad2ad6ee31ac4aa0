"""The ``roboalign`` command line: one module per sub-command (``main(argv) -> int``) and their helpers.
The top layer: it may import every other part of RoboAlign; nothing imports it."""
