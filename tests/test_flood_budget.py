"""The token bucket behind every flood budget (plexicorn.flood.Budget), on a fake clock."""

from __future__ import annotations

import pytest

from plexicorn.runtime.flood import Budget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_full_bucket_allows_exactly_its_capacity_at_once(clock):
    budget = Budget(5, 10.0, clock)
    assert [budget.spend() for _ in range(6)] == [True] * 5 + [False]


def test_it_refills_continuously_at_capacity_per_window(clock):
    budget = Budget(10, 10.0, clock)  # 1 token per second
    for _ in range(10):
        assert budget.spend()
    clock.now += 0.5
    assert not budget.spend()  # half a token: not enough (and now overdrawn by half a token)
    clock.now += 1.5  # 1.5 tokens earned: back to 1.0
    assert budget.spend()
    assert not budget.spend()


def test_refilling_stops_at_the_capacity(clock):
    budget = Budget(3, 1.0, clock)
    clock.now += 3600.0  # an hour idle earns no more than a full bucket
    assert [budget.spend() for _ in range(4)] == [True, True, True, False]


def test_a_steady_rate_within_the_budget_never_runs_dry(clock):
    budget = Budget(100, 10.0, clock)  # 10 per second
    for _ in range(10_000):  # 5 per second, for 2000 s
        clock.now += 0.2
        assert budget.spend()


def test_a_sustained_flood_runs_dry_within_capacity_plus_its_refill(clock):
    budget = Budget(100, 10.0, clock)
    allowed = 0
    for _ in range(1000):  # 1000 per second, for one second
        clock.now += 0.001
        allowed += budget.spend()
    assert 100 <= allowed <= 110  # the capacity, plus what one second refills


def test_cost_and_earn(clock):
    budget = Budget(10, 10.0, clock)
    assert budget.spend(8)
    assert not budget.spend(3)  # 2 left: overdrawn
    budget.earn(5)
    assert budget.spend(3.5)
    budget.earn(1000)  # capped at the capacity
    assert budget.spend(10)
    assert not budget.spend(0.5)
