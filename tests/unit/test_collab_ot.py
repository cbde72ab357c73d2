"""The collab example's operational transformation (examples/collab/_ot.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

_OT_PATH = Path(__file__).resolve().parents[2] / "examples" / "collab" / "_ot.py"


def _load_ot() -> ModuleType:
    # examples/ is not a package; load the module by path under a private name.
    spec = importlib.util.spec_from_file_location("_collab_ot_under_test", _OT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while the class is built
    spec.loader.exec_module(module)
    return module


ot = _load_ot()
Insert, Delete, Side = ot.Insert, ot.Delete, ot.Side

# Small alphabets make equal positions, equal characters and overlaps common.
texts = st.text(alphabet="ab", max_size=10)
inserted = st.text(alphabet="xyé😀", max_size=4)
sides = st.sampled_from(list(Side))


@st.composite
def ops_on(draw: st.DrawFn, text: str) -> object:
    pos = draw(st.integers(0, len(text)))
    if draw(st.booleans()):
        return Insert(pos, draw(inserted))
    return Delete(pos, draw(st.integers(0, len(text) - pos)))


@st.composite
def text_and_concurrent_ops(draw: st.DrawFn) -> tuple[str, object, object]:
    text = draw(texts)
    return text, draw(ops_on(text)), draw(ops_on(text))


@st.composite
def text_op_and_history(draw: st.DrawFn) -> tuple[str, object, list[object]]:
    """A base text, an edit made on it, and a history of edits applied to it in order."""
    text = draw(texts)
    op = draw(ops_on(text))
    history = []
    current = text
    for _ in range(draw(st.integers(0, 5))):
        applied = draw(ops_on(current))
        history.append(applied)
        current = ot.apply(current, applied)
    return text, op, history


class TestApply:
    def test_insert(self) -> None:
        assert ot.apply("held", Insert(3, "lo wor")) == "hello word"
        assert ot.apply("ab", Insert(0, "<")) == "<ab"
        assert ot.apply("ab", Insert(2, ">")) == "ab>"

    def test_delete(self) -> None:
        assert ot.apply("hello world", Delete(5, 6)) == "hello"
        assert ot.apply("abc", Delete(1, 0)) == "abc"

    def test_positions_are_code_points(self) -> None:
        assert ot.apply("é😀z", Insert(2, "!")) == "é😀!z"
        assert ot.apply("é😀z", Delete(1, 1)) == "éz"

    @pytest.mark.parametrize("op", [Insert(4, "x"), Delete(2, 2), Delete(4, 0)])
    def test_out_of_bounds(self, op: object) -> None:
        with pytest.raises(ot.InvalidOpError):
            ot.apply("abc", op)


class TestTransform:
    def test_concurrent_inserts_at_one_position_follow_side(self) -> None:
        assert ot.transform(Insert(2, "b"), Insert(2, "a")) == Insert(3, "b")
        assert ot.transform(Insert(2, "b"), Insert(2, "a"), Side.LEFT) == Insert(2, "b")

    def test_insert_before_and_after_another(self) -> None:
        assert ot.transform(Insert(1, "b"), Insert(2, "aa")) == Insert(1, "b")
        assert ot.transform(Insert(3, "b"), Insert(2, "aa"), Side.LEFT) == Insert(5, "b")

    def test_insert_past_delete(self) -> None:
        assert ot.transform(Insert(2, "x"), Delete(2, 3)) == Insert(2, "x")
        assert ot.transform(Insert(5, "x"), Delete(2, 3)) == Insert(2, "x")
        assert ot.transform(Insert(7, "x"), Delete(2, 3)) == Insert(4, "x")

    def test_insert_inside_deleted_range_is_dropped(self) -> None:
        assert ot.transform(Insert(3, "x"), Delete(2, 3)) == Insert(2, "")

    def test_delete_grows_over_insert_inside_it(self) -> None:
        assert ot.transform(Delete(2, 3), Insert(3, "xy")) == Delete(2, 5)
        assert ot.transform(Delete(2, 3), Insert(2, "xy")) == Delete(4, 3)
        assert ot.transform(Delete(2, 3), Insert(5, "xy")) == Delete(2, 3)

    @pytest.mark.parametrize(
        ("op", "against", "expected"),
        [
            (Delete(0, 2), Delete(4, 2), Delete(0, 2)),  # disjoint, before
            (Delete(6, 2), Delete(1, 3), Delete(3, 2)),  # disjoint, after
            (Delete(2, 4), Delete(4, 4), Delete(2, 2)),  # overlap at the end
            (Delete(4, 4), Delete(2, 4), Delete(2, 2)),  # overlap at the start
            (Delete(3, 2), Delete(1, 6), Delete(1, 0)),  # contained: nothing left
            (Delete(1, 6), Delete(3, 2), Delete(1, 4)),  # contains
            (Delete(2, 3), Delete(2, 3), Delete(2, 0)),  # identical
        ],
    )
    def test_delete_past_delete(self, op: object, against: object, expected: object) -> None:
        assert ot.transform(op, against) == expected

    def test_rebase_applies_history_in_order(self) -> None:
        history = [Insert(0, "ab"), Delete(0, 1), Insert(5, "z")]
        assert ot.rebase(Insert(2, "!"), history) == Insert(3, "!")

    @given(text_and_concurrent_ops(), sides)
    def test_tp1(self, case: tuple[str, object, object], side: object) -> None:
        text, a, b = case
        left = ot.apply(ot.apply(text, a), ot.transform(b, a, side))
        right = ot.apply(ot.apply(text, b), ot.transform(a, b, side.other))
        assert left == right

    @given(text_op_and_history())
    def test_rebase_converges_with_a_client_that_transforms_the_history(
        self, case: tuple[str, object, list[object]]
    ) -> None:
        """The server rebases a client's edit past the history; the client, which applied
        its edit first, transforms each history edit past it: both reach one text."""
        text, op, history = case
        server = text
        for applied in history:
            server = ot.apply(server, applied)
        server = ot.apply(server, ot.rebase(op, history))

        client = ot.apply(text, op)
        pending = op
        for applied in history:
            client = ot.apply(client, ot.transform(applied, pending, Side.LEFT))
            pending = ot.transform(pending, applied, Side.RIGHT)
        assert client == server

    @given(text_and_concurrent_ops())
    def test_transformed_insert_keeps_its_text_unless_deleted(
        self, case: tuple[str, object, object]
    ) -> None:
        _, a, b = case
        if isinstance(a, Insert) and a.text:
            rebased = ot.transform(a, b)
            inside = isinstance(b, Delete) and b.pos < a.pos < b.end
            assert rebased.text == ("" if inside else a.text)


class TestDiff:
    @given(texts, texts)
    def test_diff_turns_old_into_new(self, old: str, new: str) -> None:
        ops = ot.diff(old, new)
        assert len(ops) <= 2
        result = old
        for op in ops:
            result = ot.apply(result, op)
        assert result == new

    def test_diff_touches_only_the_changed_span(self) -> None:
        assert ot.diff("hello world", "hello brave world") == [Insert(6, "brave ")]
        assert ot.diff("abcdef", "abXYef") == [Delete(2, 2), Insert(2, "XY")]
        assert ot.diff("same", "same") == []


class TestWireForm:
    def test_parse_accepts_js_numbers(self) -> None:
        assert ot.parse_op({"type": "insert", "pos": 3.0, "text": "hi"}) == Insert(3, "hi")
        assert ot.parse_op({"type": "delete", "pos": 1, "length": 2.0}) == Delete(1, 2)

    @pytest.mark.parametrize(
        "data",
        [
            {"type": "insert", "pos": 1.5, "text": "x"},
            {"type": "insert", "pos": -1.0, "text": "x"},
            {"type": "insert", "pos": True, "text": "x"},
            {"type": "insert", "pos": 0.0},
            {"type": "delete", "pos": 0.0, "length": float("nan")},
            {"type": "delete", "pos": 0.0, "length": float("inf")},
            {"type": "replace", "pos": 0.0},
            {},
        ],
    )
    def test_parse_rejects_malformed_edits(self, data: dict[str, object]) -> None:
        with pytest.raises(ot.InvalidOpError):
            ot.parse_op(data)

    @given(text_and_concurrent_ops())
    def test_round_trip(self, case: tuple[str, object, object]) -> None:
        _, op, _ = case
        wire = ot.op_to_dict(op)
        assert all(isinstance(wire[key], float) for key in ("pos", "length") if key in wire)
        assert ot.parse_op(wire) == op
