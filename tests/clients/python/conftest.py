"""redis-py 8 against chorus nodes started by tests/clients/run.sh.

CHORUS_REDIS_A and CHORUS_REDIS_B hold the nodes' Redis addresses (host:port). Every test runs
with redis-py's default protocol (RESP3 in redis-py 8), with protocol=3 given explicitly, and
with protocol=2, so both of chorus's encodings meet the client's parsers.
"""

import os
import time
import uuid

import pytest
import redis

# How long a write made on one node may take to be seen on another before a test fails.
REPLICATION_DEADLINE_S = float(os.environ.get("REPLICATION_DEADLINE_S", "10"))


def address(name):
    value = os.environ.get(f"CHORUS_REDIS_{name}")
    if not value:
        pytest.fail(f"CHORUS_REDIS_{name} is not set: run tests/clients/run.sh")
    host, port = value.rsplit(":", 1)
    return host, int(port)


PROTOCOLS = {"default": {}, "resp3": {"protocol": 3}, "resp2": {"protocol": 2}}


@pytest.fixture(params=list(PROTOCOLS))
def protocol(request):
    """The keyword arguments choosing the protocol (none: redis-py's default)."""
    return PROTOCOLS[request.param]


# What a node answers a write while it compares its clock with its peers again, after the
# machine's wall clock stepped (DESIGN section 3): it refuses writes for a gossip round or two.
CLOCK_UNCHECKED = "has not yet compared its clock with its peers"


class Patient(redis.Redis):
    """A client that retries a command the node refused while re-checking its clock, as an
    application would: a VM's clock may step during a run (seen once in CI), and the suite
    tests the protocol, not that refusal. Any other error is raised at once."""

    def execute_command(self, *args, **options):
        deadline = time.monotonic() + REPLICATION_DEADLINE_S
        while True:
            try:
                return super().execute_command(*args, **options)
            except redis.ResponseError as error:
                if CLOCK_UNCHECKED not in str(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)


def connect(name, protocol, **options):
    host, port = address(name)
    client = Patient(
        host=host,
        port=port,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=10,
        **protocol,
        **options,
    )
    return client


@pytest.fixture
def node_a(protocol):
    client = connect("A", protocol)
    yield client
    client.close()


@pytest.fixture
def node_b(protocol):
    client = connect("B", protocol)
    yield client
    client.close()


@pytest.fixture
def prefix():
    """A key prefix of this test alone."""
    return f"py:{uuid.uuid4().hex[:12]}:"


def eventually(read, expected, deadline_s=REPLICATION_DEADLINE_S):
    """Polls `read()` until it returns `expected`, for at most deadline_s (and 1000 tries);
    returns the last value read, so the caller's assert shows it."""
    deadline = time.monotonic() + deadline_s
    value = read()
    for _ in range(1000):
        if value == expected or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
        value = read()
    return value
