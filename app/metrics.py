"""What ``/metrics`` serves: Prometheus metrics of one application, in a registry of its own
(never the process-wide default one: several apps in one process, as in the tests, stay apart).

Requests are counted when they end (``app/http/observe.py``), database commands as the driver
reports them (``CommandCounter`` in ``app/db/engine.py``); the caches and the engine's restarts
are read when ``/metrics`` is scraped, so they cost nothing per request. README "Observability"
lists every metric.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from prometheus_client.metrics_core import Metric

# One ``_created`` series beside every counter and histogram doubles what a scrape carries and
# tells nothing a restart's reset does not.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
# Label values where a request ran no operation, ran one without a name, or named one past
# MAX_OPERATIONS: parentheses are in no GraphQL name, so none collides with a real one.
NO_OPERATION = "(none)"
ANONYMOUS = "(anonymous)"
OTHER_OPERATION = "(other)"
OK = "OK"
# Operation names are the client's choice: past this many distinct ones, the rest share one
# label value (each name costs a few dozen series).
MAX_OPERATIONS = 100
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

CacheCounts = tuple[int, int]  # (hits, misses) so far


class Metrics:
    """The metrics of one application and the registry that serves them."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "memvault_requests",
            "GraphQL requests answered, by operation, operation type and outcome code",
            ["operation", "type", "code"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "memvault_request_duration_seconds",
            "Time from a GraphQL request's arrival to the end of its answer, by operation",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.response_bytes = Histogram(
            "memvault_response_size_bytes",
            "Size of a GraphQL answer's body, by operation",
            ["operation"],
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "memvault_requests_in_flight",
            "GraphQL requests being answered now",
            registry=registry,
        )
        self.db_seconds = Histogram(
            "memvault_db_command_duration_seconds",
            "Time of a database command, by command name (when this process owns its client)",
            ["command"],
            buckets=DB_BUCKETS,
            registry=registry,
        )
        self.db_failures = Counter(
            "memvault_db_command_failures",
            "Database commands that failed, by command name",
            ["command"],
            registry=registry,
        )
        self.subscriptions_open = Gauge(
            "memvault_subscriptions_open",
            "GraphQL subscriptions open now",
            registry=registry,
        )
        # Read at scrape time: (hits, misses) of each cache, and the embedded engine's restarts.
        self.caches: dict[str, Callable[[], CacheCounts]] = {}
        self.engine_restarts: Callable[[], int] = lambda: 0
        registry.register(_Polled(self))
        self._operations: set[str] = set()
        self._request_series: dict[tuple[str, str, str], tuple[Counter, Histogram, Histogram]] = {}
        self._db_series: dict[str, Histogram] = {}

    def request(self, operation: str, kind: str, code: str, seconds: float, size: int) -> None:
        """One GraphQL request answered: its operation name and type (``NO_OPERATION`` when
        none ran), its outcome code (``OK`` or the first error's), its time and body size."""
        key = (operation, kind, code)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = self._series(operation, kind, code)
        count, latency, size_bytes = series
        count.inc()
        latency.observe(seconds)
        size_bytes.observe(size)

    def _series(self, operation: str, kind: str, code: str) -> tuple[Counter, Histogram, Histogram]:
        if operation not in self._operations:
            if len(self._operations) >= MAX_OPERATIONS:
                operation = OTHER_OPERATION
            else:
                self._operations.add(operation)
        return (
            self.requests.labels(operation, kind, code),
            self.request_seconds.labels(operation),
            self.response_bytes.labels(operation),
        )

    def db_command(self, command: str, seconds: float, failed: bool) -> None:
        """One database command done (the driver's command monitoring)."""
        series = self._db_series.get(command)
        if series is None:
            series = self._db_series[command] = self.db_seconds.labels(command)
        series.observe(seconds)
        if failed:
            self.db_failures.labels(command).inc()

    def subscription_opened(self) -> None:
        """A subscription started: ``memvault_subscriptions_open`` goes up by one."""
        self.subscriptions_open.inc()

    def subscription_closed(self) -> None:
        """A subscription ended (however it ended): ``memvault_subscriptions_open`` goes down."""
        self.subscriptions_open.dec()

    @contextlib.contextmanager
    def subscription(self) -> Iterator[None]:
        """Counts one open subscription for the block's duration."""
        self.subscription_opened()
        try:
            yield
        finally:
            self.subscription_closed()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _Polled:
    """The metrics read when scraped: cache lookups and engine restarts."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            "memvault_cache_lookups",
            "Cache lookups by cache (documents, api_keys, persisted_queries) and result",
            labels=["cache", "result"],
        )
        for name, counts in sorted(self.metrics.caches.items()):
            hits, misses = counts()
            lookups.add_metric([name, "hit"], hits)
            lookups.add_metric([name, "miss"], misses)
        yield lookups
        yield CounterMetricFamily(
            "memvault_engine_restarts",
            "Restarts of the embedded engine after it died",
            value=self.metrics.engine_restarts(),
        )
