"""The list-append checker: Elle's method, written for Syncline.

Transactions append unique values to lists under keys and read whole lists.
Because every value is unique and lists only grow, a read reveals the order of
every append before it: the longest read of a key is its version order, and
every other read must be a prefix of it. From those orders the checker builds
a dependency graph over committed transactions:

- ``ww``: the writer of a key's i-th value precedes the writer of its (i+1)-th;
- ``wr``: the writer of the last value a read saw precedes the reader;
- ``rw``: a reader precedes the writer of the value after the last it saw
  (an anti-dependency: it did not see that write);
- ``process``: a client's transactions in the order it ran them (its session);
- ``realtime``: one that completed before another was invoked precedes it.

A cycle is an anomaly, named by the edges it needs (Adya's classes): ``G0``
(ww only), ``G1c`` (ww and wr), ``G-single`` (exactly one rw), ``G2-item``
(more rw); ``-process`` or ``-realtime`` when it also needs those edges. Beside
cycles it reports aborted reads (``G1a``: a value only a failed transaction
wrote), intermediate reads (``G1b``: a value its writer overwrote in the same
transaction), reads inconsistent with the transaction's own appends
(``internal``), reads that are no prefix of the version order
(``incompatible-order``), values nobody appended (``garbage-read``), values read
twice in one list (``duplicate``), and acknowledged appends missing from the
final reads (``lost-write``).
"""

from __future__ import annotations

import enum
import itertools
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncline.verify._history import History, OpType, Txn


class Model(enum.Enum):
    """Which orders a cycle may use and still be an anomaly."""

    SERIALIZABLE = "serializable"
    STRONG_SESSION_SERIALIZABLE = "strong-session-serializable"
    """Serializable, and each client sees its own earlier transactions."""
    STRICT_SERIALIZABLE = "strict-serializable"
    """Serializable in an order that respects real time."""


class Edge(enum.Enum):
    WW = "ww"
    WR = "wr"
    RW = "rw"
    PROCESS = "process"
    REALTIME = "realtime"


@dataclass(frozen=True)
class Anomaly:
    """One thing the history shows that the model forbids."""

    kind: str
    explanation: str
    txns: tuple[dict[str, Any], ...] = ()
    """The transactions involved, as invoked or completed."""
    cycle: tuple[tuple[int, str, int], ...] = ()
    """For a cycle: (txn id, edge, next txn id) steps."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "explanation": self.explanation}
        if self.txns:
            out["txns"] = list(self.txns)
        if self.cycle:
            out["cycle"] = [{"from": a, "edge": e, "to": b} for a, e, b in self.cycle]
        return out


@dataclass
class Graph:
    """Transactions (by id) and the typed edges between them."""

    edges: dict[int, dict[int, set[Edge]]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, a: int, b: int, edge: Edge) -> None:
        if a != b:
            self.edges[a].setdefault(b, set()).add(edge)

    def successors(self, node: int, allowed: frozenset[Edge]) -> Iterable[int]:
        for succ, kinds in self.edges.get(node, {}).items():
            if kinds & allowed:
                yield succ

    def nodes(self) -> set[int]:
        found = set(self.edges)
        for succs in self.edges.values():
            found |= set(succs)
        return found


ALL_EDGES = frozenset(Edge)
DATA_EDGES = frozenset({Edge.WW, Edge.WR, Edge.RW})


def _model_edges(model: Model) -> frozenset[Edge]:
    if model is Model.SERIALIZABLE:
        return DATA_EDGES
    if model is Model.STRONG_SESSION_SERIALIZABLE:
        return DATA_EDGES | {Edge.PROCESS}
    return ALL_EDGES


@dataclass
class ListAppendResult:
    anomalies: list[Anomaly]
    txns: int
    keys: int
    reads_checked: int


def check_list_append(
    history: History,
    *,
    model: Model = Model.STRONG_SESSION_SERIALIZABLE,
    final_reads: Mapping[Any, Sequence[Any]] | None = None,
    f: str = "txn",
) -> ListAppendResult:
    """Check a list-append history. ``final_reads``: each key's list read after every
    operation had completed (acknowledged appends missing from it were lost)."""
    txns = history.txns(f)
    by_id = {t.id: t for t in txns}
    anomalies: list[Anomaly] = []
    writer: dict[tuple[Any, Any], Txn] = {}
    appended_by: dict[Any, dict[Txn, list[Any]]] = defaultdict(dict)
    for txn in txns:
        for key, value in txn.appends():
            earlier = writer.get((key, value))
            if earlier is not None:
                anomalies.append(
                    Anomaly(
                        "duplicate-append",
                        f"value {value!r} was appended to key {key!r} twice: the workload "
                        "must use unique values",
                        (earlier.describe(), txn.describe()),
                    )
                )
            writer[(key, value)] = txn
            appended_by[key].setdefault(txn, []).append(value)

    ok = [t for t in txns if t.type is OpType.OK]
    orders, reads_checked = _version_orders(ok, final_reads, writer, anomalies)
    anomalies += _read_anomalies(ok, writer, appended_by)
    if final_reads is not None:
        anomalies += _lost_writes(txns, final_reads)
    graph = _dependency_graph(ok, orders, writer)
    _add_process_edges(graph, ok)
    _add_realtime_edges(graph, ok)
    anomalies += _cycles(graph, by_id, _model_edges(model))
    return ListAppendResult(anomalies, len(txns), len(orders), reads_checked)


def _version_orders(
    ok: Sequence[Txn],
    final_reads: Mapping[Any, Sequence[Any]] | None,
    writer: Mapping[tuple[Any, Any], Txn],
    anomalies: list[Anomaly],
) -> tuple[dict[Any, list[Any]], int]:
    """Each key's version order (its longest read), checking every read against it."""
    reads: dict[Any, list[tuple[Txn | None, list[Any]]]] = defaultdict(list)
    for txn in ok:
        for key, read in txn.reads():
            if read is not None:
                reads[key].append((txn, list(read)))
    for key, final in (final_reads or {}).items():
        reads[key].append((None, list(final)))
    orders: dict[Any, list[Any]] = {}
    checked = 0
    for key, key_reads in reads.items():
        longest = max((values for _, values in key_reads), key=len)
        orders[key] = longest
        for reader, values in key_reads:
            checked += 1
            described = (reader.describe(),) if reader is not None else ()
            if len(set(values)) != len(values):
                anomalies.append(
                    Anomaly(
                        "duplicate",
                        f"a read of key {key!r} holds a value twice: {values!r}",
                        described,
                    )
                )
            if values != longest[: len(values)]:
                anomalies.append(
                    Anomaly(
                        "incompatible-order",
                        f"reads of key {key!r} disagree on its order: {values!r} is no "
                        f"prefix of {longest!r}",
                        described,
                    )
                )
            for value in values:
                if (key, value) not in writer:
                    anomalies.append(
                        Anomaly(
                            "garbage-read",
                            f"a read of key {key!r} holds {value!r}, which nobody appended",
                            described,
                        )
                    )
    return orders, checked


def _read_anomalies(
    ok: Sequence[Txn],
    writer: Mapping[tuple[Any, Any], Txn],
    appended_by: Mapping[Any, Mapping[Txn, list[Any]]],
) -> list[Anomaly]:
    anomalies: list[Anomaly] = []
    for txn in ok:
        own: dict[Any, list[Any]] = defaultdict(list)
        seen: dict[Any, list[Any]] = {}
        for op in txn.ops:
            kind, key, value = op[0], op[1], op[2]
            if kind == "append":
                own[key].append(value)
                if key in seen:
                    seen[key] = [*seen[key], value]
                continue
            if value is None:
                continue
            values = list(value)
            expected = seen.get(key)
            if expected is not None and values != expected:
                anomalies.append(
                    Anomaly(
                        "internal",
                        f"key {key!r} read as {values!r} where the transaction's own earlier "
                        f"read and appends make it {expected!r}",
                        (txn.describe(),),
                    )
                )
            elif own[key] and values[-len(own[key]) :] != own[key]:
                anomalies.append(
                    Anomaly(
                        "internal",
                        f"key {key!r} read as {values!r} after the transaction appended "
                        f"{own[key]!r} to it",
                        (txn.describe(),),
                    )
                )
            seen[key] = values
            if not values:
                continue
            last = values[-1]
            source = writer.get((key, last))
            if source is None or source is txn:
                continue
            if source.type is OpType.FAIL:
                anomalies.append(
                    Anomaly(
                        "G1a",
                        f"aborted read: key {key!r} shows {last!r}, appended by a transaction "
                        "that failed",
                        (txn.describe(), source.describe()),
                    )
                )
            written = appended_by[key][source]
            if written[-1] != last:
                anomalies.append(
                    Anomaly(
                        "G1b",
                        f"intermediate read: key {key!r} ends at {last!r}, which its writer "
                        f"then overwrote with {written[-1]!r} in the same transaction",
                        (txn.describe(), source.describe()),
                    )
                )
    return anomalies


def _lost_writes(txns: Sequence[Txn], final_reads: Mapping[Any, Sequence[Any]]) -> list[Anomaly]:
    lost = []
    for txn in txns:
        if txn.type is not OpType.OK:
            continue
        for key, value in txn.appends():
            final = final_reads.get(key)
            if final is not None and value not in final:
                lost.append(
                    Anomaly(
                        "lost-write",
                        f"append of {value!r} to key {key!r} was acknowledged but the final "
                        f"read of the key does not hold it: {list(final)!r}",
                        (txn.describe(),),
                    )
                )
    return lost


def _dependency_graph(
    ok: Sequence[Txn], orders: Mapping[Any, list[Any]], writer: Mapping[tuple[Any, Any], Txn]
) -> Graph:
    graph = Graph()

    def writer_id(key: Any, value: Any) -> int | None:
        txn = writer.get((key, value))
        # A transaction whose outcome is unknown (info) but whose write was seen
        # did commit: it takes part in the order.
        return None if txn is None or txn.type is OpType.FAIL else txn.id

    for key, order in orders.items():
        for before, after in itertools.pairwise(order):
            a, b = writer_id(key, before), writer_id(key, after)
            if a is not None and b is not None:
                graph.add(a, b, Edge.WW)
    for txn in ok:
        own = {(k, v) for k, v in txn.appends()}
        for key, values in txn.reads():
            if values is None:
                continue
            order = orders.get(key, [])
            # The last value it saw that another transaction wrote: wr from its writer.
            external = [v for v in values if (key, v) not in own]
            if external:
                source = writer_id(key, external[-1])
                if source is not None:
                    graph.add(source, txn.id, Edge.WR)
            # The next value in the order, unless its own: rw to its writer.
            following = [v for v in order[len(values) :] if (key, v) not in own]
            if following:
                target = writer_id(key, following[0])
                if target is not None:
                    graph.add(txn.id, target, Edge.RW)
    return graph


def _add_process_edges(graph: Graph, ok: Sequence[Txn]) -> None:
    last: dict[int, int] = {}
    for txn in sorted(ok, key=lambda t: t.invoked_ns):
        previous = last.get(txn.process)
        if previous is not None:
            graph.add(previous, txn.id, Edge.PROCESS)
        last[txn.process] = txn.id


def _add_realtime_edges(graph: Graph, ok: Sequence[Txn]) -> None:
    """Edges from each transaction to those invoked after it completed, reduced to
    a frontier: one completed before another was invoked need not link to what
    follows that other (the path through it says so)."""
    events: list[tuple[int, int, Txn]] = []
    for txn in ok:
        assert txn.completed_ns is not None
        events.append((txn.invoked_ns, 1, txn))
        events.append((txn.completed_ns, 0, txn))
    # Completions before invocations at the same instant: that is "before".
    events.sort(key=lambda e: (e[0], e[1]))
    frontier: dict[int, Txn] = {}
    for _, kind, txn in events:
        if kind == 1:
            for earlier in frontier.values():
                graph.add(earlier.id, txn.id, Edge.REALTIME)
        else:
            invoked = txn.invoked_ns
            for done_id in [
                i
                for i, t in frontier.items()
                if t.completed_ns is not None and t.completed_ns < invoked
            ]:
                del frontier[done_id]
            frontier[txn.id] = txn


def _strongly_connected(graph: Graph, allowed: frozenset[Edge]) -> list[list[int]]:
    """Tarjan's algorithm, iteratively; components of more than one node."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    components: list[list[int]] = []
    counter = 0
    for root in sorted(graph.nodes()):
        if root in index:
            continue
        work: list[tuple[int, Iterable[int]]] = [
            (root, iter(list(graph.successors(root, allowed))))
        ]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(list(graph.successors(succ, allowed)))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return components


def _path(
    graph: Graph, start: int, goal: int, allowed: frozenset[Edge], within: set[int]
) -> list[int] | None:
    """A shortest path of at least one edge from ``start`` to ``goal`` (a cycle when
    they are the same node) over ``allowed`` edges, through ``within`` only."""
    parents: dict[int, int] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in graph.successors(node, allowed):
            if succ not in within or succ in parents:
                continue
            parents[succ] = node
            if succ == goal:
                path = [goal]
                cursor = node
                while cursor != start:
                    path.append(cursor)
                    cursor = parents[cursor]
                path.append(start)
                return list(reversed(path))
            queue.append(succ)
    return None


def _edge_between(graph: Graph, a: int, b: int, allowed: frozenset[Edge]) -> Edge:
    kinds = graph.edges[a][b] & allowed
    # Name the step by its strongest reason: data edges before orders.
    for edge in (Edge.WW, Edge.WR, Edge.RW, Edge.PROCESS, Edge.REALTIME):
        if edge in kinds:
            return edge
    raise AssertionError("no allowed edge")


# The cycle searches, most specific first: (name, edges, how many rw edges).
_SEARCHES: tuple[tuple[str, frozenset[Edge], bool], ...] = (
    ("G0", frozenset({Edge.WW}), False),
    ("G1c", frozenset({Edge.WW, Edge.WR}), False),
    ("G-single", frozenset({Edge.WW, Edge.WR}), True),
    ("G2-item", DATA_EDGES, False),
)


def _find_cycle(
    graph: Graph, component: set[int], allowed: frozenset[Edge]
) -> tuple[str, list[int], frozenset[Edge]] | None:
    """The most specific cycle in ``component`` that ``allowed`` permits."""
    extras = [
        ("", frozenset()),
        ("-process", frozenset({Edge.PROCESS})),
        ("-realtime", frozenset({Edge.PROCESS, Edge.REALTIME})),
    ]
    for suffix, extra in extras:
        if not extra <= allowed:
            continue
        for name, edges, one_rw in _SEARCHES:
            usable = (edges | extra) & allowed
            if one_rw:
                # One rw edge a -> b closed by a path b -> a without rw.
                for a in sorted(component):
                    for b in graph.successors(a, frozenset({Edge.RW})):
                        if b not in component:
                            continue
                        back = _path(graph, b, a, usable, component)
                        if back is not None:
                            return name + suffix, [a, *back], usable | {Edge.RW}
                continue
            for node in sorted(component):
                cycle = _path(graph, node, node, usable, component)
                if cycle is not None:
                    return name + suffix, cycle, usable
    return None


def _cycles(graph: Graph, by_id: Mapping[int, Txn], allowed: frozenset[Edge]) -> list[Anomaly]:
    anomalies = []
    for component in _strongly_connected(graph, allowed):
        found = _find_cycle(graph, set(component), allowed)
        if found is None:
            continue
        name, cycle, usable = found
        steps = tuple(
            (a, _edge_between(graph, a, b, usable).value, b) for a, b in itertools.pairwise(cycle)
        )
        anomalies.append(
            Anomaly(
                name,
                f"a cycle of {len(cycle) - 1} transactions ("
                + ", ".join(f"{a} -{e}-> {b}" for a, e, b in steps)
                + f"); the component holds {len(component)}",
                tuple(by_id[t].describe() for t in cycle[:-1]),
                steps,
            )
        )
    return anomalies
