"""The tables the verification workloads write: Syncline's own, like the job
tables, so every deployment has them and no app's schema is touched. Each run
keeps to its own ``run`` id, so runs never see each other's keys."""

from __future__ import annotations

from syncline.schema import IndexDefinition

VERIFY_LISTS = "_verify_lists"
"""``{run, key, values}``: the list-append workload's lists."""
VERIFY_ACCOUNTS = "_verify_accounts"
"""``{run, key, balance}``: the bank workload's accounts."""
BY_KEY = "by_key"

VERIFY_TABLES: dict[str, tuple[IndexDefinition, ...]] = {
    VERIFY_LISTS: (IndexDefinition(BY_KEY, ("run", "key")),),
    VERIFY_ACCOUNTS: (IndexDefinition(BY_KEY, ("run", "key")),),
}
