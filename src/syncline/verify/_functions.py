"""The verification app: system functions (``_system/verify:...``, admin keys only)
that ``syncline verify`` drives through the client protocols.

Built in rather than deployed, so checking a live deployment never replaces its
code: every deployment has them, over Syncline's own ``_verify_*`` tables, and
each run keeps to keys of its own. They are ordinary queries and mutations, so
they go through the same runner, OCC and commit path as an app's.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from syncline._errors import ValidationError
from syncline.database import TableInfo
from syncline.functions import FunctionKind, FunctionSpec
from syncline.runtime import (
    SYSTEM_PREFIX,
    SystemMutationCtx,
    SystemQueryCtx,
    system_function,
    system_registry,
)
from syncline.storage import Document
from syncline.values import v
from syncline.verify._tables import BY_KEY, VERIFY_ACCOUNTS, VERIFY_LISTS

MAX_OPS = 64
MAX_KEYS = 256

_OPS = v.array(v.array(v.any()))
_RUN = v.string()


def _table(ctx: SystemQueryCtx | SystemMutationCtx, name: str) -> TableInfo:
    table = ctx.deployment.model.table(name)
    if table is None:
        raise ValidationError(f"this deployment has no {name} table yet; deploy again to create it")
    return table


async def _find(
    ctx: SystemQueryCtx | SystemMutationCtx, table: str, run: str, key: str
) -> Document | None:
    rows = ctx.db.system.query(table).with_index(BY_KEY, lambda q: q.eq("run", run).eq("key", key))
    # The first, not unique(): a broken server may have created a key twice, and
    # the workload must keep running so that the checker can say what it saw.
    return await rows.first()


# -- list-append -------------------------------------------------------------------


@system_function(FunctionKind.MUTATION, {"run": _RUN, "ops": _OPS})
async def txn(ctx: SystemMutationCtx, run: str, ops: list[list[Any]]) -> list[list[Any]]:
    """Run ``[["append", key, value], ["r", key, null], ...]`` in one transaction;
    the ops with each read's list filled in."""
    if len(ops) > MAX_OPS:
        raise ValidationError(f"a transaction holds at most {MAX_OPS} operations, got {len(ops)}")
    lists = _table(ctx, VERIFY_LISTS)
    done: list[list[Any]] = []
    for position, op in enumerate(ops):
        if len(op) != 3 or op[0] not in ("append", "r") or not isinstance(op[1], str):
            raise ValidationError(
                f'ops[{position}]: expected ["append", key, value] or ["r", key, null]'
            )
        f, key, value = op
        doc = await _find(ctx, VERIFY_LISTS, run, key)
        values = [] if doc is None else list(doc["values"])
        if f == "r":
            done.append(["r", key, values])
            continue
        if doc is None:
            record = {"run": run, "key": key, "values": [value]}
            await ctx.tx.insert(lists, record, now_ms=time.time() * 1000.0)
        else:
            await ctx.tx.replace(doc["_id"], {"run": run, "key": key, "values": [*values, value]})
        done.append(["append", key, value])
    return done


@system_function(FunctionKind.QUERY, {"run": _RUN, "keys": v.array(v.string())})
async def read(ctx: SystemQueryCtx, run: str, keys: list[str]) -> list[list[Any]]:
    """A read-only transaction: ``[["r", key, list], ...]`` at one snapshot."""
    if len(keys) > MAX_KEYS:
        raise ValidationError(f"read at most {MAX_KEYS} keys at once, got {len(keys)}")
    out = []
    for key in keys:
        doc = await _find(ctx, VERIFY_LISTS, run, key)
        out.append(["r", key, [] if doc is None else list(doc["values"])])
    return out


# -- bank --------------------------------------------------------------------------


@system_function(FunctionKind.MUTATION, {"run": _RUN, "balances": v.array(v.array(v.any()))})
async def open_accounts(ctx: SystemMutationCtx, run: str, balances: list[list[Any]]) -> None:
    """Open ``[[key, balance], ...]`` (int64 balances); an existing account stays."""
    accounts = _table(ctx, VERIFY_ACCOUNTS)
    for key, balance in balances:
        if await _find(ctx, VERIFY_ACCOUNTS, run, key) is None:
            record = {"run": run, "key": key, "balance": balance}
            await ctx.tx.insert(accounts, record, now_ms=time.time() * 1000.0)


@system_function(
    FunctionKind.MUTATION,
    {"run": _RUN, "source": v.string(), "target": v.string(), "amount": v.int64()},
)
async def transfer(ctx: SystemMutationCtx, run: str, source: str, target: str, amount: int) -> bool:
    """Move ``amount`` from ``source`` to ``target`` if ``source`` has it; whether it did."""
    if amount <= 0 or source == target:
        raise ValidationError("transfer a positive amount between two different accounts")
    payer = await _find(ctx, VERIFY_ACCOUNTS, run, source)
    payee = await _find(ctx, VERIFY_ACCOUNTS, run, target)
    if payer is None or payee is None:
        raise ValidationError(f"run {run!r} has no account {source if payer is None else target!r}")
    if payer["balance"] < amount:
        return False
    await ctx.tx.replace(
        payer["_id"], {"run": run, "key": source, "balance": payer["balance"] - amount}
    )
    await ctx.tx.replace(
        payee["_id"], {"run": run, "key": target, "balance": payee["balance"] + amount}
    )
    return True


@system_function(FunctionKind.QUERY, {"run": _RUN})
async def balances(ctx: SystemQueryCtx, run: str) -> list[list[Any]]:
    """Every account of the run at one snapshot: ``[[key, balance], ...]``."""
    rows = ctx.db.system.query(VERIFY_ACCOUNTS).with_index(BY_KEY, lambda q: q.eq("run", run))
    return [[doc["key"], doc["balance"]] for doc in await rows.take(MAX_KEYS)]


# -- scheduled effects -------------------------------------------------------------

EFFECT_SHARDS = 16
"""Effects append their tokens to this many lists (one list would make every
effect conflict with every other)."""


def effects_key(token: str) -> str:
    """The list a token's effect appends to."""
    return f"effects-{zlib.crc32(token.encode()) % EFFECT_SHARDS}"


@system_function(
    FunctionKind.MUTATION,
    {"run": _RUN, "tokens": v.array(v.string()), "kind": v.string(), "delay_ms": v.float64()},
)
async def schedule(
    ctx: SystemMutationCtx, run: str, tokens: list[str], kind: str, delay_ms: float
) -> list[str]:
    """Schedule one effect per token, as a mutation (``kind`` "mutation") or an
    action that runs the mutation; the jobs' ids, in order."""
    if kind not in ("mutation", "action"):
        raise ValidationError(f"kind must be 'mutation' or 'action', got {kind!r}")
    target = f"{SYSTEM_PREFIX}verify:{'effect' if kind == 'mutation' else 'effect_action'}"
    return [
        await ctx.scheduler.run_after(delay_ms / 1000.0, target, {"run": run, "token": token})
        for token in tokens
    ]


@system_function(FunctionKind.MUTATION, {"run": _RUN, "token": v.string()})
async def effect(ctx: SystemMutationCtx, run: str, token: str) -> None:
    """The effect: the token appended to the run's effects list."""
    await txn.handler(ctx, run=run, ops=[["append", effects_key(token), token]])


@system_function(FunctionKind.ACTION, {"run": _RUN, "token": v.string()})
async def effect_action(ctx: Any, run: str, token: str) -> None:
    """An action whose one effect is the mutation above."""
    await ctx.run_mutation(f"{SYSTEM_PREFIX}verify:effect", {"run": run, "token": token})


@system_function(FunctionKind.QUERY, {"ids": v.array(v.string())})
async def job_states(ctx: SystemQueryCtx, ids: list[str]) -> list[str | None]:
    """Each job's state (``pending``, ``success`` ...; None if it is gone)."""
    if len(ids) > MAX_KEYS:
        raise ValidationError(f"ask for at most {MAX_KEYS} jobs at once, got {len(ids)}")
    states = []
    for job_id in ids:
        job = await ctx.db.system.get(job_id)
        states.append(None if job is None else str(job["state"]["kind"]))
    return states


def _registry() -> dict[str, FunctionSpec]:
    named = {
        "verify:txn": txn,
        "verify:read": read,
        "verify:open_accounts": open_accounts,
        "verify:transfer": transfer,
        "verify:balances": balances,
        "verify:schedule": schedule,
        "verify:effect": effect,
        "verify:effect_action": effect_action,
        "verify:job_states": job_states,
    }
    return system_registry(named)


VERIFY_FUNCTIONS = _registry()
"""The verification app's functions by path."""
