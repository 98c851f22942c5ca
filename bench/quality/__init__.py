"""Search-quality benchmark: does shift pick the models worth fine-tuning? (seed 002)

``datasets``: generated upstream domains and VTAB-like downstream tasks; ``zoo``: experts
and generalists pre-trained on them; ``metrics``, ``report`` and ``harness``: the run,
the regret of each strategy and its report (``python -m bench.quality``).
"""
