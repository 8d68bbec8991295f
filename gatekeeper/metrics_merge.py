"""One /metrics for several proxy workers: their own scrapes, merged at scrape time.

Why not prometheus_client's multiprocess mode: half of gatekeeper's metrics are computed when
scraped (the grant and request gauges, `PolicyCollector`), plus `Info`, the process metrics and
a `policy_info` series that is replaced on reload, none of which that mode carries. Merging the
workers' ordinary scrapes keeps every metric, name and label exactly as with one process:

- counters and histograms are summed; a restarted worker's last scraped counts are kept
  (`retire`), so the sums never go backwards (counts after its last scrape are lost with it);
- gauges: the health gauges take the worst worker (`MIN_GAUGES`), memory and file descriptors
  add up (`SUM_GAUGES`), every other gauge takes the highest value: they are the same in every
  worker (the policy, the state database, versions) or timestamps, where the newest counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

MIN_GAUGES = frozenset({
    "gatekeeper_config_last_reload_successful", "gatekeeper_state_healthy",
    "gatekeeper_directory_up",
})
SUM_GAUGES = frozenset({
    "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
    "process_max_fds",
})
MONOTONIC = frozenset({"counter", "histogram", "summary"})

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


class MergedScrapes:
    """The merge, and what restarted workers had counted (one per supervisor)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[int, tuple[int, dict[str, dict[SampleKey, float]]]] = {}  # slot -> pid
        self._retired: dict[str, dict[SampleKey, float]] = {}

    def merge(self, scrapes: Iterable[tuple[int, int, str]]) -> list[Metric]:
        """Merge (worker slot, pid, exposition text) scrapes into metric families."""
        families: dict[str, Metric] = {}
        values: dict[str, dict[SampleKey, float]] = {}
        with self._lock:
            for slot, pid, text in scrapes:
                counts: dict[str, dict[SampleKey, float]] = {}
                for family in text_string_to_metric_families(text):
                    merged = families.setdefault(
                        family.name,
                        Metric(family.name, family.documentation, family.type, family.unit),
                    )
                    into = values.setdefault(family.name, {})
                    for sample in family.samples:
                        key = (sample.name, tuple(sorted(sample.labels.items())))
                        into[key] = _combine(merged, into.get(key), sample.value)
                        if family.type in MONOTONIC:
                            counts.setdefault(family.name, {})[key] = sample.value
                self._remember(slot, pid, counts)
            for name, retired in self._retired.items():
                if name in families:
                    into = values[name]
                    for key, value in retired.items():
                        into[key] = into.get(key, 0.0) + value
        for name, merged in families.items():
            for (sample_name, labels), value in values[name].items():
                merged.add_sample(sample_name, dict(labels), value)
        return list(families.values())

    def _remember(self, slot: int, pid: int,
                  counts: dict[str, dict[SampleKey, float]]) -> None:
        previous = self._seen.get(slot)
        if previous is not None and previous[0] != pid:  # the worker was restarted
            for name, samples in previous[1].items():
                retired = self._retired.setdefault(name, {})
                for key, value in samples.items():
                    retired[key] = retired.get(key, 0.0) + value
        self._seen[slot] = (pid, counts)


def _combine(family: Metric, current: float | None, value: float) -> float:
    if current is None:
        return value
    if family.type in MONOTONIC or family.name in SUM_GAUGES:
        return current + value
    if family.name in MIN_GAUGES:
        return min(current, value)
    return max(current, value)


class MergedCollector(Collector):
    """A registry collector over `scrapes()`, which fetches the workers' texts when called."""

    def __init__(self, merged: MergedScrapes,
                 scrapes: Callable[[], list[tuple[int, int, str]]]) -> None:
        self.merged = merged
        self.scrapes = scrapes

    def collect(self) -> Iterator[Metric]:
        yield from self.merged.merge(self.scrapes())
