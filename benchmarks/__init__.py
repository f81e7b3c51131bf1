"""Benchmarks that print speed and memory figures: `python -m benchmarks.<name>` (see README.md here)."""
