"""Reproduction and speed benchmarks of pl-pac-trs (``python -m benchmarks --help``)."""
