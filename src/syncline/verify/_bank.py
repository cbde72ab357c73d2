"""The bank checker: transfers between accounts conserve the total, and no
snapshot anyone read shows a negative balance or a different total."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncline.verify._history import History, OpType
from syncline.verify._list_append import Anomaly


@dataclass
class BankResult:
    anomalies: list[Anomaly]
    reads_checked: int
    transfers_ok: int


def check_bank(
    history: History, *, total: int, final_balances: Mapping[str, int] | None = None
) -> BankResult:
    """``history``: ``transfer`` ops (value ``[source, target, amount]``, completed
    as ``[source, target, amount, moved]``) and ``read`` ops (completed as
    ``[[key, balance], ...]``, one snapshot)."""
    anomalies: list[Anomaly] = []
    reads = 0
    transfers = sum(1 for t in history.txns("transfer") if t.type is OpType.OK)
    snapshots: list[tuple[dict[str, Any], Mapping[str, int]]] = [
        (txn.describe(), {str(k): int(b) for k, b in txn.ops})
        for txn in history.txns("read")
        if txn.type is OpType.OK
    ]
    if final_balances is not None:
        snapshots.append(({"final": True}, final_balances))
    for described, balances in snapshots:
        reads += 1
        seen = sum(balances.values())
        if seen != total:
            anomalies.append(
                Anomaly(
                    "bank-total",
                    f"a read saw a total of {seen}, not {total}: {dict(balances)!r}",
                    (described,),
                )
            )
        negative = {k: b for k, b in balances.items() if b < 0}
        if negative:
            anomalies.append(
                Anomaly(
                    "negative-balance", f"a read saw negative balances {negative!r}", (described,)
                )
            )
    return BankResult(anomalies, reads, transfers)
