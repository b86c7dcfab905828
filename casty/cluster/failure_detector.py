"""The phi accrual failure detector and a registry of one detector per monitored node.

Instead of a yes/no verdict, a phi accrual detector outputs a suspicion level
``phi = -log10(P(a heartbeat arrives later than now))``, estimated from the recent distribution
of heartbeat inter-arrival times; the node is deemed unavailable once phi reaches a threshold
(N. Hayashibara, X. Défago, R. Yared, T. Katayama, "The φ Accrual Failure Detector", IEEE SRDS
2004). As in Akka's implementation (described in its documentation), the normal distribution's
CDF is replaced by a logistic approximation, ``F(y) ≈ 1 / (1 + exp(-y (1.5976 + 0.070566 y²)))``
(S. Bowling et al., "A logistic approximation to the cumulative normal distribution", Journal
of Industrial Engineering and Management, 2009), the mean is increased by an *acceptable
heartbeat pause*, and the standard deviation is kept above a minimum, so that a steady loopback
link (almost no jitter) does not make the detector hair-trigger.

Defaults, for heartbeats every ``DEFAULT_HEARTBEAT_INTERVAL`` = 0.5 s: phi crosses the
threshold 8 when ``y ≈ 5.23``, that is after a silence of about
``mean + acceptable_heartbeat_pause + 5.23 * std_deviation = 0.5 + 1.2 + 5.23 * 0.1 ≈ 2.2 s``
on a steady link. A crashed node is therefore declared unavailable 1.7 to 2.2 s after it
crashed (its last heartbeat came at most one interval before). A node that pauses for
``p`` seconds (SIGSTOP, a long GC) leaves a silence of about ``p + 0.5`` s: for the issue's
1 s pause that is 1.5 s, where phi ≈ 0.01, and phi stays below 8 for pauses up to about
1.7 s, so pauses shorter than the acceptable pause (1.2 s) are tolerated with half a second to
spare for scheduling jitter. Intervals observed while the node was unavailable are not added
to the history, so an outage does not widen the distribution.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar, final

from casty.errors import ConfigurationError

__all__ = [
    "DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE",
    "DEFAULT_FIRST_HEARTBEAT_ESTIMATE",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_MAX_SAMPLE_SIZE",
    "DEFAULT_MIN_STD_DEVIATION",
    "DEFAULT_THRESHOLD",
    "DetectorStatistics",
    "FailureDetectorRegistry",
    "PhiAccrualFailureDetector",
]

#: Seconds between heartbeats a monitoring node sends (used for the first estimate).
DEFAULT_HEARTBEAT_INTERVAL = 0.5
#: Phi at which a node is deemed unavailable (a false positive chance of about 1e-8 per check).
DEFAULT_THRESHOLD = 8.0
#: Inter-arrival samples kept (200 samples at 0.5 s: the last 100 seconds).
DEFAULT_MAX_SAMPLE_SIZE = 200
#: Floor of the standard deviation in seconds (Akka's default, 100 ms).
DEFAULT_MIN_STD_DEVIATION = 0.1
#: Seconds of extra silence tolerated on top of the usual interval.
DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE = 1.2
#: Assumed mean interval in seconds before any has been measured.
DEFAULT_FIRST_HEARTBEAT_ESTIMATE = DEFAULT_HEARTBEAT_INTERVAL

_LN10 = math.log(10.0)


def phi_of(time_diff: float, mean: float, std_deviation: float) -> float:
    """Phi for a silence of ``time_diff`` seconds under a normal(``mean``, ``std_deviation``).

    Uses the logistic approximation of the CDF, computed as ``log10(1 + exp(t))`` in a form
    that neither overflows nor loses precision for long silences.
    """
    y = (time_diff - mean) / std_deviation
    t = y * (1.5976 + 0.070566 * y * y)
    softplus = t + math.log1p(math.exp(-t)) if t > 0 else math.log1p(math.exp(t))
    return softplus / _LN10


@dataclass(frozen=True, slots=True)
class DetectorStatistics:
    """A snapshot of one detector.

    Attributes:
        samples: inter-arrival samples in the history (2 seeded ones after the first heartbeat).
        mean: their mean in seconds (0.0 before the first heartbeat).
        std_deviation: their standard deviation in seconds, before the floor is applied.
        last_heartbeat: clock reading of the last heartbeat, or ``None``.
        phi: the current suspicion level.
    """

    samples: int
    mean: float
    std_deviation: float
    last_heartbeat: float | None
    phi: float


@final
class PhiAccrualFailureDetector:
    """A phi accrual failure detector for one monitored node.

    Not thread-safe; meant to be driven by one task (the heartbeat actor). Before the first
    heartbeat phi is 0 and the node counts as available: something must start the detector
    (see `casty.cluster.heartbeat.HeartbeatSender`, which does so after
    ``expected_response_after`` even without an answer).

    Args:
        threshold: phi at which `is_available` turns false; > 0.
        max_sample_size: inter-arrival samples kept; >= 1.
        min_std_deviation: floor of the standard deviation, seconds; > 0.
        acceptable_heartbeat_pause: extra silence tolerated, seconds; >= 0.
        first_heartbeat_estimate: the mean assumed at the first heartbeat, seconds; > 0. The
            history starts as two samples at ``estimate ± estimate / 4``.
        clock: monotonic seconds (inject a manual clock in tests).

    Raises:
        ConfigurationError: a parameter is out of its range.
    """

    __slots__ = (
        "_acceptable_pause",
        "_clock",
        "_first_estimate",
        "_intervals",
        "_last",
        "_min_std",
        "_squares",
        "_sum",
        "threshold",
    )

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        max_sample_size: int = DEFAULT_MAX_SAMPLE_SIZE,
        min_std_deviation: float = DEFAULT_MIN_STD_DEVIATION,
        acceptable_heartbeat_pause: float = DEFAULT_ACCEPTABLE_HEARTBEAT_PAUSE,
        first_heartbeat_estimate: float = DEFAULT_FIRST_HEARTBEAT_ESTIMATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not threshold > 0:
            raise ConfigurationError(f"threshold must be > 0, got {threshold!r}")
        if isinstance(max_sample_size, bool) or not isinstance(max_sample_size, int):
            raise ConfigurationError(f"max_sample_size must be an int, got {max_sample_size!r}")
        if max_sample_size < 1:
            raise ConfigurationError(f"max_sample_size must be >= 1, got {max_sample_size}")
        if not min_std_deviation > 0:
            raise ConfigurationError(f"min_std_deviation must be > 0 s, got {min_std_deviation!r}")
        if not acceptable_heartbeat_pause >= 0:
            raise ConfigurationError(
                f"acceptable_heartbeat_pause must be >= 0 s, got {acceptable_heartbeat_pause!r}"
            )
        if not first_heartbeat_estimate > 0:
            raise ConfigurationError(
                f"first_heartbeat_estimate must be > 0 s, got {first_heartbeat_estimate!r}"
            )
        self.threshold = float(threshold)
        self._min_std = float(min_std_deviation)
        self._acceptable_pause = float(acceptable_heartbeat_pause)
        self._first_estimate = float(first_heartbeat_estimate)
        self._clock = clock
        self._intervals: deque[float] = deque(maxlen=max_sample_size)
        self._sum = 0.0
        self._squares = 0.0
        self._last: float | None = None

    @property
    def is_monitoring(self) -> bool:
        """Whether at least one heartbeat has been recorded."""
        return self._last is not None

    def heartbeat(self) -> None:
        """Record a heartbeat now (a heartbeat response arrived)."""
        now = self._clock()
        if self._last is None:
            estimate = self._first_estimate
            self._add(estimate - estimate / 4)
            self._add(estimate + estimate / 4)
        elif self.is_available(now):
            # After an outage the long gap is not a sample of the normal distribution.
            self._add(now - self._last)
        self._last = now

    def _add(self, interval: float) -> None:
        if len(self._intervals) == self._intervals.maxlen:
            dropped = self._intervals[0]
            self._sum -= dropped
            self._squares -= dropped * dropped
        self._intervals.append(interval)
        self._sum += interval
        self._squares += interval * interval

    def _mean_and_std(self) -> tuple[float, float]:
        n = len(self._intervals)
        if n == 0:
            return 0.0, 0.0
        mean = self._sum / n
        variance = max(self._squares / n - mean * mean, 0.0)
        return mean, math.sqrt(variance)

    def phi(self, now: float | None = None) -> float:
        """The suspicion level at ``now`` (default: the clock); 0.0 before any heartbeat."""
        if self._last is None:
            return 0.0
        at = self._clock() if now is None else now
        mean, std = self._mean_and_std()
        return phi_of(at - self._last, mean + self._acceptable_pause, max(std, self._min_std))

    def is_available(self, now: float | None = None) -> bool:
        """Whether phi is below the threshold at ``now`` (default: the clock)."""
        return self.phi(now) < self.threshold

    def statistics(self) -> DetectorStatistics:
        """A snapshot of the history and the current phi."""
        mean, std = self._mean_and_std()
        return DetectorStatistics(len(self._intervals), mean, std, self._last, self.phi())


K = TypeVar("K", bound=Hashable)


@final
class FailureDetectorRegistry(Generic[K]):
    """One failure detector per monitored node, created on its first heartbeat.

    A node without a detector counts as available with phi 0.

    Args:
        factory: makes a fresh detector (share the clock and settings through it).
    """

    __slots__ = ("_detectors", "_factory")

    def __init__(self, factory: Callable[[], PhiAccrualFailureDetector]) -> None:
        self._factory = factory
        self._detectors: dict[K, PhiAccrualFailureDetector] = {}

    def heartbeat(self, node: K) -> None:
        """Record a heartbeat from ``node``, starting its detector if needed."""
        detector = self._detectors.get(node)
        if detector is None:
            detector = self._detectors[node] = self._factory()
        detector.heartbeat()

    def is_available(self, node: K) -> bool:
        """Whether ``node`` is deemed alive (true when it is not monitored)."""
        detector = self._detectors.get(node)
        return detector is None or detector.is_available()

    def is_monitoring(self, node: K) -> bool:
        """Whether ``node`` has a detector with at least one heartbeat."""
        detector = self._detectors.get(node)
        return detector is not None and detector.is_monitoring

    def phi(self, node: K) -> float:
        """``node``'s suspicion level (0.0 when it is not monitored)."""
        detector = self._detectors.get(node)
        return detector.phi() if detector is not None else 0.0

    def remove(self, node: K) -> None:
        """Stop monitoring ``node`` and forget its history; idempotent."""
        self._detectors.pop(node, None)

    def reset(self) -> None:
        """Forget every detector."""
        self._detectors.clear()

    def monitored(self) -> frozenset[K]:
        """The nodes that have a detector."""
        return frozenset(self._detectors)
