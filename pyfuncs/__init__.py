"""In-database Python of the shift extension: SHiFT-QL, planning, proxies.

Runs inside PostgreSQL (PL/Python) and inside workers; never imports torch.
"""

__version__ = "0.1.0"
