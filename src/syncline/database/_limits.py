"""How much one function execution may read and write, as in Convex."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransactionLimits:
    """Per function execution; going past one fails it before anything is written."""

    max_read_documents: int = 32_000
    """Documents read (each ``get``, each document a query scans)."""
    max_read_intervals: int = 4_096
    """Separate index ranges read (each ``get`` is one, each query one)."""
    max_write_documents: int = 16_000
    """Documents written (inserted, changed or deleted)."""
    max_write_bytes: int = 16 * 1024 * 1024
    """Total size of the documents written, as Convex JSON."""
