"""The scheduled-effect checker on hand-made outcomes: exactly once for mutations,
at most once for actions, never for what was not scheduled."""

from __future__ import annotations

from syncline.verify._history import OpType
from syncline.verify._ledger import check_ledger

OK, FAIL, INFO = OpType.OK, OpType.FAIL, OpType.INFO


def kinds(jobs: dict, states: dict, effects: list) -> list[str]:  # type: ignore[type-arg]
    return sorted(a.kind for a in check_ledger(jobs, states, effects).anomalies)


def test_each_effect_once_is_clean() -> None:
    jobs = {"t1": ("mutation", "j1", OK), "t2": ("action", "j2", OK), "t3": ("action", "j3", OK)}
    states = {"j1": "success", "j2": "success", "j3": "failed"}
    result = check_ledger(jobs, states, ["t1", "t2"])
    assert result.anomalies == []
    assert result.scheduled == {"mutation": 1, "action": 2}
    assert result.states == {"success": 2, "failed": 1}


def test_a_mutation_twice_or_never_is_an_anomaly() -> None:
    jobs = {"t1": ("mutation", "j1", OK), "t2": ("mutation", "j2", OK)}
    states = {"j1": "success", "j2": "success"}
    assert kinds(jobs, states, ["t1", "t1"]) == ["duplicate-effect", "lost-effect", "lost-effect"]


def test_an_action_runs_at_most_once_even_if_it_failed() -> None:
    jobs = {"t1": ("action", "j1", OK)}
    assert kinds(jobs, {"j1": "failed"}, ["t1"]) == []
    assert kinds(jobs, {"j1": "failed"}, []) == []
    assert kinds(jobs, {"j1": "failed"}, ["t1", "t1"]) == ["duplicate-effect"]


def test_unscheduled_unfinished_and_unknown_jobs() -> None:
    jobs = {
        "t1": ("mutation", None, FAIL),
        "t2": ("mutation", "j2", OK),
        "t3": ("mutation", None, INFO),
    }
    found = kinds(jobs, {"j2": "pending"}, ["t1", "t3", "t9"])
    assert found == ["effect-of-unscheduled", "garbage-effect", "job-not-finished"]
    # A failed mutation job must have no effect.
    jobs = {"t4": ("mutation", "j4", OK)}
    assert kinds(jobs, {"j4": "failed"}, ["t4"]) == ["effect-of-failed-mutation"]
