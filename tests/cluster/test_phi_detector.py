"""The phi accrual failure detector with its defaults, on a hand-driven clock."""

from __future__ import annotations

import math
import random

import pytest

from casty.cluster.failure_detector import (
    DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_THRESHOLD,
    FailureDetectorRegistry,
    PhiAccrualFailureDetector,
    phi_of,
)
from casty.errors import ConfigurationError


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def steady(clock: FakeClock, detector: PhiAccrualFailureDetector, beats: int) -> None:
    for _ in range(beats):
        clock.now += DEFAULT_HEARTBEAT_INTERVAL
        detector.heartbeat()


def crossing_time(detector: PhiAccrualFailureDetector, clock: FakeClock) -> float:
    """Seconds after the last heartbeat at which phi reaches the threshold (1 ms steps)."""
    start = clock.now
    for ms in range(1, 20_000):
        if not detector.is_available(start + ms / 1000):
            return ms / 1000
    raise AssertionError("phi never crossed the threshold")


def test_before_any_heartbeat_the_node_counts_as_available() -> None:
    clock = FakeClock()
    detector = PhiAccrualFailureDetector(clock=clock)
    clock.now += 1000
    assert detector.phi() == 0.0 and detector.is_available() and not detector.is_monitoring


def test_regular_heartbeats_keep_phi_low() -> None:
    clock = FakeClock()
    detector = PhiAccrualFailureDetector(clock=clock)
    detector.heartbeat()
    for _ in range(200):
        clock.now += DEFAULT_HEARTBEAT_INTERVAL
        assert detector.phi() < 0.1  # one interval after the last heartbeat
        detector.heartbeat()
    assert detector.statistics().mean == pytest.approx(DEFAULT_HEARTBEAT_INTERVAL)


def test_silence_crosses_the_threshold_when_the_defaults_say() -> None:
    clock = FakeClock()
    detector = PhiAccrualFailureDetector(clock=clock)
    detector.heartbeat()
    steady(clock, detector, 100)
    # mean 0.5 s + acceptable pause 1.2 s + 5.23 * minimum std deviation 0.1 s
    expected = DEFAULT_HEARTBEAT_INTERVAL + DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE + 5.226 * 0.1
    assert crossing_time(detector, clock) == pytest.approx(expected, abs=0.002)
    assert 2.1 < expected < 2.3
    phis = [detector.phi(clock.now + t / 10) for t in range(40)]
    assert phis == sorted(phis)  # suspicion only grows with silence


def test_crash_is_detected_within_two_and_a_quarter_seconds_of_the_last_heartbeat() -> None:
    clock = FakeClock()
    detector = PhiAccrualFailureDetector(clock=clock)
    detector.heartbeat()
    steady(clock, detector, 20)
    clock.now += 2.25
    assert not detector.is_available()
    assert detector.phi() > DEFAULT_THRESHOLD


def test_a_one_second_pause_every_ten_seconds_never_crosses_the_threshold() -> None:
    # The scenario: a node paused (SIGSTOP) for 1 s every 10 s over 60 s, heartbeats
    # every 0.5 s with up to 50 ms of jitter. A pause delays the next answer by the pause.
    clock = FakeClock()
    rng = random.Random(7)
    detector = PhiAccrualFailureDetector(clock=clock)
    detector.heartbeat()
    start, worst, pauses = clock.now, 0.0, 0
    while clock.now - start < 60.0:
        gap = DEFAULT_HEARTBEAT_INTERVAL + rng.uniform(0.0, 0.05)
        if int(clock.now - start) % 10 == 9 and int(clock.now + gap - start) % 10 == 0:
            gap += 1.0  # the pause
            pauses += 1
        for step in range(1, int(gap * 100) + 1):  # check every 10 ms of the silence
            worst = max(worst, detector.phi(clock.now + step / 100))
        clock.now += gap
        detector.heartbeat()
    assert pauses == 6
    assert worst < 1.0  # far below the threshold of 8


def test_minimum_std_deviation_bounds_the_sensitivity() -> None:
    clock = FakeClock()
    tight = PhiAccrualFailureDetector(clock=clock, min_std_deviation=0.1)
    loose = PhiAccrualFailureDetector(clock=clock, min_std_deviation=0.5)
    for detector in (tight, loose):
        detector.heartbeat()
    for _ in range(300):  # exactly regular: the measured deviation decays to 0
        clock.now += 0.5
        tight.heartbeat()
        loose.heartbeat()
    assert tight.statistics().std_deviation < 0.01
    at = clock.now + 2.0
    assert tight.phi(at) == pytest.approx(phi_of(2.0, 0.5 + 1.2, 0.1), rel=1e-3)
    assert loose.phi(at) == pytest.approx(phi_of(2.0, 0.5 + 1.2, 0.5), rel=1e-3)
    assert loose.phi(at) < tight.phi(at)


def test_the_gap_of_an_outage_is_not_learned() -> None:
    clock = FakeClock()
    detector = PhiAccrualFailureDetector(clock=clock)
    detector.heartbeat()
    steady(clock, detector, 50)
    before = detector.statistics()
    clock.now += 30.0  # unavailable long before this heartbeat
    detector.heartbeat()
    after = detector.statistics()
    assert after.samples == before.samples and after.mean == pytest.approx(before.mean)
    assert detector.is_available()


def test_history_is_bounded_and_seeded_from_the_first_estimate() -> None:
    clock = FakeClock()
    detector = PhiAccrualFailureDetector(
        clock=clock, max_sample_size=10, first_heartbeat_estimate=2.0
    )
    detector.heartbeat()
    first = detector.statistics()
    assert first.samples == 2 and first.mean == pytest.approx(2.0)
    assert first.std_deviation == pytest.approx(0.5)
    steady(clock, detector, 50)
    assert detector.statistics().samples == 10


def test_phi_is_finite_and_sane_at_the_extremes() -> None:
    assert phi_of(1e9, 1.0, 0.1) > 1e6 and math.isfinite(phi_of(1e9, 1.0, 0.1))
    assert phi_of(-1e9, 1.0, 0.1) == 0.0
    assert phi_of(1.0, 1.0, 0.1) == pytest.approx(math.log10(2))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0},
        {"max_sample_size": 0},
        {"max_sample_size": 2.5},
        {"min_std_deviation": 0},
        {"acceptable_heartbeat_pause": -1},
        {"first_heartbeat_estimate": 0},
        {"threshold": float("nan")},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        PhiAccrualFailureDetector(**kwargs)  # type: ignore[arg-type]


def test_registry_keeps_one_detector_per_node() -> None:
    clock = FakeClock()
    registry: FailureDetectorRegistry[str] = FailureDetectorRegistry(
        lambda: PhiAccrualFailureDetector(clock=clock)
    )
    assert registry.is_available("a") and registry.phi("a") == 0.0
    assert not registry.is_monitoring("a")
    registry.heartbeat("a")
    registry.heartbeat("b")
    assert registry.monitored() == {"a", "b"}
    for _ in range(10):
        clock.now += 0.5
        registry.heartbeat("a")
    clock.now += 2.0  # b has been silent for 7 s, a for 2 s
    assert registry.is_available("a") and not registry.is_available("b")
    registry.remove("b")
    registry.remove("b")
    assert registry.is_available("b") and registry.monitored() == {"a"}
    registry.reset()
    assert registry.monitored() == frozenset()
