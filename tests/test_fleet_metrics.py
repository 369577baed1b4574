"""Model values -> Prometheus text, parsed back with prometheus_client's parser."""
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pytracekit.fleet.metrics import (LabelLimiter, counter_family, histogram_family,
                                      loss_families)
from pytracekit.model import Histogram, LossReport


def _exposed(*families) -> dict:
    class Fixed:
        def collect(self):
            return list(families)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}, text


def test_log2_usecs_histogram_becomes_seconds_buckets_with_estimated_sum():
    hist = Histogram({0: 1, 3: 4, 5: 2}, unit="usecs")   # 0 us, 4..7 us, 16..31 us
    families, text = _exposed(histogram_family("pytracekit_x", "X.", {(): hist}))
    samples = {(s.name, s.labels.get("le")): s.value for s in families["pytracekit_x_seconds"].samples}
    assert samples[("pytracekit_x_seconds_bucket", "1e-06")] == 1
    assert samples[("pytracekit_x_seconds_bucket", "2e-06")] == 1     # empty slots listed too
    assert samples[("pytracekit_x_seconds_bucket", "8e-06")] == 5
    assert samples[("pytracekit_x_seconds_bucket", "1.6e-05")] == 5
    assert samples[("pytracekit_x_seconds_bucket", "3.2e-05")] == 7
    assert samples[("pytracekit_x_seconds_bucket", "+Inf")] == 7
    assert samples[("pytracekit_x_seconds_count", None)] == 7
    # midpoints: 0.5 + 4 * 6 + 2 * 24 us
    assert abs(samples[("pytracekit_x_seconds_sum", None)] - 72.5e-6) < 1e-12
    assert "Sum is estimated from bucket midpoints" in text


def test_exact_sums_and_bytes():
    hist = Histogram({11: 3}, unit="bytes")
    families, text = _exposed(histogram_family("pytracekit_io", "IO.", {("sda",): hist},
                                                ("disk",), sums={("sda",): 3000}))
    samples = {(s.name, s.labels.get("le")): s.value for s in families["pytracekit_io_bytes"].samples}
    assert samples[("pytracekit_io_bytes_bucket", "2048")] == 3
    assert samples[("pytracekit_io_bytes_sum", None)] == 3000
    assert "Sum is exact" in text


def test_label_values_beyond_the_limit_go_to_other_and_series_stay_monotonic():
    limiter = LabelLimiter(2)
    first = counter_family("pytracekit_calls", "C.", {("a",): 10, ("b",): 5, ("c",): 1},
                           ("function",), limiter=limiter)
    assert {s.labels["function"]: s.value for s in first.samples} == {"a": 10, "b": 5, "other": 1}
    # c grows past b later: b keeps its own series, c stays in other
    second = counter_family("pytracekit_calls", "C.", {("a",): 11, ("b",): 5, ("c",): 50,
                                                       ("d",): 2}, ("function",), limiter=limiter)
    assert {s.labels["function"]: s.value for s in second.samples} == {"a": 11, "b": 5,
                                                                      "other": 52}


def test_histograms_beyond_the_limit_are_merged_into_other():
    limiter = LabelLimiter(1)
    hists = {("1",): Histogram({2: 5}, "usecs"), ("2",): Histogram({2: 1}, "usecs"),
             ("3",): Histogram({4: 1}, "usecs")}
    family = histogram_family("pytracekit_h", "H.", hists, ("pid",), limiter=limiter)
    counts = {s.labels["pid"]: s.value for s in family.samples if s.name.endswith("_count")}
    assert counts == {"1": 5, "other": 2}


def test_loss_counters_per_tool():
    families, _ = _exposed(*loss_families({"profile": LossReport(3, 2, 1, 0)}))
    assert families["pytracekit_lost_events"].samples[0].labels == {"tool": "profile"}
    assert families["pytracekit_lost_events"].samples[0].value == 3
    assert families["pytracekit_stack_errors"].samples[0].value == 2
    assert families["pytracekit_map_full"].samples[0].value == 1


def test_unknown_frames_is_a_gauge_the_rest_counters():
    families, _ = _exposed(*loss_families({"profile": LossReport(0, 0, 0, 4)}))
    assert families["pytracekit_unknown_frames"].type == "gauge"
    assert families["pytracekit_unknown_frames"].samples[0].value == 4
    assert families["pytracekit_lost_events"].type == "counter"
