"""What the HTTP client keeps per upstream: a circuit breaker, and what it saw (for health).

Used by `medianest_server.http.HttpClient`, one of each per upstream name.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from medianest_server.clock import SYSTEM_CLOCK, Clock

CircuitState = Literal["closed", "open", "half_open"]
LATENCY_SAMPLES = 256


class CircuitBreaker:
    """Stops calling an upstream that keeps failing, and lets one probe through now and then.

    closed: calls pass; `failure_threshold` consecutive failures open it. open: calls are refused
    until `reset_timeout_seconds` have passed, then half_open: exactly one probe at a time is let
    through; its success closes the circuit, its failure opens it again and restarts the timer.
    Call `allow()` before each attempt and then exactly one of `record_success()`,
    `record_failure()` or `release()` (no verdict: the caller was cancelled).
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout_seconds: float = 30.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout_seconds < 0:
            raise ValueError("reset_timeout_seconds must not be negative")
        self.failure_threshold = failure_threshold
        self.reset_timeout_seconds = reset_timeout_seconds
        self._clock = clock
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None

    @property
    def state(self) -> CircuitState:
        if (
            self._state == "open"
            and self._clock.monotonic() - self._opened_at >= self.reset_timeout_seconds
        ):
            self._state = "half_open"
            self._probe_started = None
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_after_seconds(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when it is not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout_seconds - self._clock.monotonic())

    def allow(self) -> bool:
        """May a call go to the upstream now? In half_open, True for one caller at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self._clock.monotonic()
        # a probe that never reported (its caller forgot) stops blocking after one reset period
        if (
            self._probe_started is not None
            and now - self._probe_started < self.reset_timeout_seconds
        ):
            return False
        self._probe_started = now
        return True

    def record_success(self) -> None:
        """The upstream answered (any status below 500)."""
        if self.state == "open":
            return  # a call admitted before the circuit opened; the timer decides, not it
        self._state = "closed"
        self._failures = 0
        self._probe_started = None

    def record_failure(self) -> None:
        """The upstream failed: connection error, timeout or a 5xx."""
        state = self.state
        if state == "open":
            return  # already open: a straggler must not push the retry time back
        self._failures += 1
        if state == "half_open" or self._failures >= self.failure_threshold:
            self._state = "open"
            self._opened_at = self._clock.monotonic()
            self._probe_started = None

    def release(self) -> None:
        """Give back an `allow()` without a verdict, so the next caller may probe."""
        if self._state == "half_open":
            self._probe_started = None


@dataclass
class UpstreamStats:
    """What the client saw of one upstream: for the health page and metrics.

    `requests` counts attempts sent (retries included), `failures` the attempts that failed
    (connection error, timeout, 5xx, unusable body), `rejected` the calls refused while the
    circuit was open. `latencies_ms` keeps the last 256 attempt latencies.
    """

    requests: int = 0
    failures: int = 0
    last_latency_ms: float | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    circuit: CircuitState = "closed"
    rejected: int = 0
    latencies_ms: deque[float] = field(
        default_factory=lambda: deque(maxlen=LATENCY_SAMPLES), repr=False
    )

    def latency_percentile(self, percent: float) -> float | None:
        """The `percent` (0-100) percentile of the kept latencies, nearest rank; None if none."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        rank = math.ceil(percent / 100 * len(ordered))
        return ordered[min(max(rank, 1), len(ordered)) - 1]
