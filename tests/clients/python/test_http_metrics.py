"""chorus's /metrics read by Prometheus's own Python parsers, on nodes started by run.sh.

CHORUS_HTTP_A and CHORUS_HTTP_B hold the nodes' HTTP addresses (host:port). The text must parse
with the OpenMetrics parser (what chorus declares in its Content-Type) and with the classic
Prometheus text parser, carry the families of DESIGN section 11, and its counters must move
when the node works: a write through HTTP on A, replicated from B.
"""

import os
import time
import urllib.request
import uuid

import pytest
import redis
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as prometheus_families

# How long a write made on one node may take to be seen on another before a test fails.
REPLICATION_DEADLINE_S = float(os.environ.get("REPLICATION_DEADLINE_S", "10"))

FAMILIES = {
    "chorus_requests": "counter",
    "chorus_request_duration_seconds": "histogram",
    "chorus_propagation_lag_seconds": "histogram",
    "chorus_gossip_messages": "counter",
    "chorus_gossip_bytes": "counter",
    "chorus_gossip_packets_lost": "counter",
    "chorus_members": "gauge",
    "chorus_keys": "gauge",
    "chorus_tombstones": "gauge",
    "chorus_waits_pending": "gauge",
    "chorus_skew_refusals": "counter",
    "chorus_clock_skew_max_seconds": "gauge",
    "chorus_fence_refusals": "counter",
    "chorus_resets": "counter",
    "chorus_connections": "gauge",
    "chorus_redis_unknown_commands": "counter",
}


def base(name):
    value = os.environ.get(f"CHORUS_HTTP_{name}")
    if not value:
        pytest.fail(f"CHORUS_HTTP_{name} is not set: run tests/clients/run.sh")
    return f"http://{value}"


def request(name, path, method="GET", body=None):
    req = urllib.request.Request(base(name) + path, data=body, method=method)
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, response.headers, response.read()


def scrape(name):
    status, headers, body = request(name, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    return body.decode()


def value(families, family, sample_name, **labels):
    for metric in families:
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_parse_with_both_parsers_and_have_the_designed_families():
    # An unknown Redis command, so that its family has a sample to show.
    host, port = os.environ["CHORUS_REDIS_A"].rsplit(":", 1)
    with pytest.raises(redis.ResponseError):
        redis.Redis(host=host, port=int(port)).execute_command("FROBNICATE")
    # A request, so that the request families have samples to show.
    assert request("A", "/health")[0] == 200
    text = scrape("A")
    openmetrics = {m.name: m.type for m in openmetrics_families(text)}
    classic = {m.name: m.type for m in prometheus_families(text)}
    for family, kind in FAMILIES.items():
        assert openmetrics.get(family) == kind, (family, openmetrics.get(family))
        assert family in classic, family
    families = list(openmetrics_families(text))
    unknown = {"command": "frobnicate"}
    assert value(families, "chorus_redis_unknown_commands", "chorus_redis_unknown_commands_total", **unknown) >= 1


def test_counters_move_when_the_node_works():
    before = list(openmetrics_families(scrape("A")))
    key = f"metrics/{uuid.uuid4().hex}"
    for _ in range(3):
        assert request("A", f"/v1/kv/{key}", "PUT", b"v")[0] == 200
    deadline = time.monotonic() + REPLICATION_DEADLINE_S
    while True:
        try:
            if request("B", f"/v1/kv/{key}")[0] == 200:
                break
        except urllib.error.HTTPError as error:
            assert error.code == 404
        assert time.monotonic() < deadline, "the write did not reach B"
        time.sleep(0.05)
    after = list(openmetrics_families(scrape("A")))
    labels = {"frontend": "http", "kind": "put", "result": "ok"}
    puts = value(after, "chorus_requests", "chorus_requests_total", **labels)
    assert puts - value(before, "chorus_requests", "chorus_requests_total", **labels) == 3
    sent = {"direction": "sent"}
    assert value(after, "chorus_gossip_messages", "chorus_gossip_messages_total", **sent) > value(
        before, "chorus_gossip_messages", "chorus_gossip_messages_total", **sent
    )
    b = list(openmetrics_families(scrape("B")))
    assert value(b, "chorus_propagation_lag_seconds", "chorus_propagation_lag_seconds_count") >= 1


def test_a_pipelined_batch_counts_each_command_in_the_requests_and_their_latency():
    host, port = os.environ["CHORUS_REDIS_A"].rsplit(":", 1)
    duration = "chorus_request_duration_seconds"
    series = [("SET", "ok"), ("SET", "error"), ("GET", "ok")]

    def counts():
        families = list(openmetrics_families(scrape("A")))
        found = {}
        for kind, result in series:
            labels = {"frontend": "redis", "kind": kind, "result": result}
            requests = value(families, "chorus_requests", "chorus_requests_total", **labels)
            observed = value(families, duration, f"{duration}_count", **labels)
            found[(kind, result)] = (requests, observed)
        return found

    before = counts()
    # One batch whose commands change kind and result: runs of them are counted at once.
    pipeline = redis.Redis(host=host, port=int(port)).pipeline(transaction=False)
    for i in range(4):
        pipeline.set(f"metrics/pipelined/{i}", "v")
    pipeline.get("metrics/pipelined/0")
    pipeline.execute_command("SET", "metrics/pipelined/bad", "v", "EX", "0")
    for i in range(5):
        pipeline.set(f"metrics/pipelined/{i}", "w")
    replies = pipeline.execute(raise_on_error=False)
    assert isinstance(replies[5], redis.ResponseError), replies[5]
    assert replies[:5] == [True] * 4 + [b"v"] and replies[6:] == [True] * 5, replies
    after = counts()
    moved = {s: (after[s][0] - before[s][0], after[s][1] - before[s][1]) for s in series}
    assert moved == {("SET", "ok"): (9, 9), ("SET", "error"): (1, 1), ("GET", "ok"): (1, 1)}
