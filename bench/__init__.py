"""Benchmarks (`python -m bench` runs them all). Scripts here print one JSON object each; nothing here is
part of the installed package, and torch is imported only by the PyTorch reference modules."""
