"""Benchmarks of shift: the engine's speed (engine.py) and its search quality (quality/)."""
