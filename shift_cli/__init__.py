"""Command line and process management for shift: the embedded PostgreSQL cluster,
local workers, and the `shift` command."""

__version__ = "0.1.0"

from .cluster import Cluster, ClusterError  # noqa: E402

__all__ = ["Cluster", "ClusterError", "__version__"]
