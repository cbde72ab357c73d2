"""The subscription check on hand-made result sequences: lists only grow, and a
subscriber is behind until it shows the final lists."""

from __future__ import annotations

from syncline.verify._workloads import SubscriptionTracker


def read(**lists: list[int]) -> list[list[object]]:
    return [["r", key, values] for key, values in lists.items()]


def test_growing_results_are_fine_and_converge() -> None:
    tracker = SubscriptionTracker(2, ["a", "b"])
    tracker.observe(0, read(a=[], b=[]))
    tracker.observe(0, read(a=[1], b=[]))
    tracker.observe(0, read(a=[1, 3], b=[2]))  # two versions at once: skipped one
    tracker.observe(1, read(a=[1, 3], b=[2]))
    assert tracker.anomalies == [] and tracker.updates == 4
    assert tracker.behind({"a": [1, 3], "b": [2]}) == []
    assert tracker.behind({"a": [1, 3, 4], "b": [2]}) == [0, 1]


def test_an_older_or_different_result_is_an_anomaly() -> None:
    tracker = SubscriptionTracker(1, ["a"])
    tracker.observe(0, read(a=[1, 2]))
    tracker.observe(0, read(a=[1]))  # went back
    tracker.observe(0, read(a=[1, 2, 3]))
    tracker.observe(0, read(a=[1, 5, 3, 4]))  # a different history than [1, 2, 3]
    assert [a.kind for a in tracker.anomalies] == ["subscription-went-back"] * 2
    assert "from [1, 2] to [1]" in tracker.anomalies[0].explanation


def test_a_subscriber_that_saw_nothing_is_behind() -> None:
    tracker = SubscriptionTracker(2, ["a"])
    tracker.observe(0, read(a=[7]))
    assert tracker.behind({"a": [7]}) == [1]
    assert tracker.behind({}) == [0]
