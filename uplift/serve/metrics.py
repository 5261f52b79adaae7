"""The service's metrics in the Prometheus text format (version 0.0.4), written by hand.

``GET /metrics`` returns, in this order:

``uplift_decisions_total{arm}`` (counter)
    Decisions given per arm since the service started (the engine's counters).
``uplift_capacity_left{arm}`` (gauge)
    What is left of each arm's capacity (``+Inf`` for an arm without a limit).
``uplift_model_info{model_id}`` (gauge, always 1)
    The model deciding now; ``uplift_model_reloads_total`` counts the switches to a newer
    champion and ``uplift_model_reload_errors_total`` the checks that failed.
``uplift_engine_calls_total``, ``uplift_engine_requests_total``, ``uplift_engine_orders_total``
    Calls of the engine, and the requests and orders they decided: requests that wait for a
    free worker share a call (see :class:`uplift.serve.app.Batcher`).
``uplift_http_requests_total{path,code}`` (counter)
    Requests answered, by path and HTTP status code.
``uplift_http_request_duration_seconds{path}`` (histogram)
    Seconds from the request's arrival to the end of its response, with the buckets of
    :data:`LATENCY_BUCKETS`.

Paths outside the service's own (a scanner's guesses) share ``path="other"``, so that the
number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "Histogram",
    "ServiceMetrics",
    "escape_label",
    "format_value",
    "sample_line",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Upper bounds of the latency buckets, in seconds (``+Inf`` is added).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: ``+Inf``, ``-Inf``, ``NaN`` or a number."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def escape_label(value: object) -> str:
    """A label value with backslash, double quote and line feed escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def sample_line(name: str, labels: Mapping[str, object] | None, value: float) -> str:
    """One sample: ``name{label="value",...} number``."""
    if labels:
        inner = ",".join(f'{key}="{escape_label(v)}"' for key, v in labels.items())
        return f"{name}{{{inner}}} {format_value(value)}"
    return f"{name} {format_value(value)}"


def _family(name: str, kind: str, help_text: str, lines: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *lines]


@dataclass
class Histogram:
    """Observations of one label set: counts per bucket (not cumulative), their sum and count."""

    bounds: Sequence[float] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is at least ``value``."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: Mapping[str, object]) -> list[str]:
        """The ``_bucket`` samples (cumulative, ``le`` last), then ``_sum`` and ``_count``."""
        out, running = [], 0
        for bound, n in zip([*self.bounds, math.inf], self.counts, strict=True):
            running += n
            bucket = {**labels, "le": format_value(bound)}
            out.append(sample_line(f"{name}_bucket", bucket, running))
        out.append(sample_line(f"{name}_sum", labels, self.total))
        out.append(sample_line(f"{name}_count", labels, self.count))
        return out


class ServiceMetrics:
    """The counters the HTTP layer keeps; thread-safe, rendered by :meth:`render`."""

    def __init__(self, paths: Sequence[str], buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.paths = tuple(paths)
        self.buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self._latency: dict[str, Histogram] = {}
        self.reloads = 0
        self.reload_errors = 0
        self.engine_calls = 0
        self.engine_requests = 0
        self.engine_orders = 0

    def path_label(self, path: str) -> str:
        """The path itself when it is one of the service's, else ``other``."""
        return path if path in self.paths else "other"

    def observe(self, path: str, code: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        label = self.path_label(path)
        with self._lock:
            self._requests[label, code] = self._requests.get((label, code), 0) + 1
            histogram = self._latency.get(label)
            if histogram is None:
                histogram = self._latency[label] = Histogram(self.buckets)
            histogram.observe(seconds)

    def count_reload(self, *, failed: bool = False) -> None:
        """Count a switch to a newer model, or a reload check that failed."""
        with self._lock:
            if failed:
                self.reload_errors += 1
            else:
                self.reloads += 1

    def count_engine_call(self, requests: int, orders: int) -> None:
        """Count one call of the engine, deciding ``orders`` of ``requests`` requests."""
        with self._lock:
            self.engine_calls += 1
            self.engine_requests += requests
            self.engine_orders += orders

    def requests(self) -> dict[tuple[str, int], int]:
        """A copy of the request counts by (path label, status code)."""
        with self._lock:
            return dict(self._requests)

    def render(
        self,
        *,
        decisions_by_arm: Mapping[str, float],
        capacity_left: Mapping[str, float],
        model_id: str,
    ) -> str:
        """The whole exposition, ending with a line feed."""
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted(
                (path, Histogram(h.bounds, list(h.counts), h.total, h.count))
                for path, h in self._latency.items()
            )
            reloads, reload_errors = self.reloads, self.reload_errors
            calls = (self.engine_calls, self.engine_requests, self.engine_orders)
        decisions = [
            sample_line("uplift_decisions_total", {"arm": arm}, n)
            for arm, n in sorted(decisions_by_arm.items())
        ]
        capacity = [
            sample_line("uplift_capacity_left", {"arm": arm}, n)
            for arm, n in sorted(capacity_left.items())
        ]
        answered = [
            sample_line("uplift_http_requests_total", {"path": path, "code": code}, n)
            for (path, code), n in requests
        ]
        durations = [
            line
            for path, histogram in latency
            for line in histogram.lines("uplift_http_request_duration_seconds", {"path": path})
        ]
        lines = [
            *_family(
                "uplift_decisions_total",
                "counter",
                "Decisions given per arm since the service started.",
                decisions,
            ),
            *_family(
                "uplift_capacity_left",
                "gauge",
                "What is left of each arm's capacity (+Inf: no limit).",
                capacity,
            ),
            *_family(
                "uplift_model_info",
                "gauge",
                "The model deciding now (always 1).",
                [sample_line("uplift_model_info", {"model_id": model_id}, 1)],
            ),
            *_family(
                "uplift_model_reloads_total",
                "counter",
                "Switches to a newer champion since the service started.",
                [sample_line("uplift_model_reloads_total", None, reloads)],
            ),
            *_family(
                "uplift_model_reload_errors_total",
                "counter",
                "Checks for a newer champion that failed (the old model kept deciding).",
                [sample_line("uplift_model_reload_errors_total", None, reload_errors)],
            ),
            *_family(
                "uplift_engine_calls_total",
                "counter",
                "Calls of the engine (requests waiting together share one).",
                [sample_line("uplift_engine_calls_total", None, calls[0])],
            ),
            *_family(
                "uplift_engine_requests_total",
                "counter",
                "Requests the engine calls decided (above the calls when requests shared them).",
                [sample_line("uplift_engine_requests_total", None, calls[1])],
            ),
            *_family(
                "uplift_engine_orders_total",
                "counter",
                "Orders the engine calls decided.",
                [sample_line("uplift_engine_orders_total", None, calls[2])],
            ),
            *_family(
                "uplift_http_requests_total",
                "counter",
                "Requests answered, by path and status code.",
                answered,
            ),
            *_family(
                "uplift_http_request_duration_seconds",
                "histogram",
                "Seconds from a request's arrival to the end of its response.",
                durations,
            ),
        ]
        return "\n".join(lines) + "\n"
