#!/usr/bin/env python3
"""Usage: tests/sigterm_after_ready.py [RUNS] (CHORUS_BIN: the binary, default
target/release/chorus).

Starts a one-node cluster RUNS times (default 100) under a NOTIFY_SOCKET of its own, sends it
SIGTERM the instant READY=1 arrives, and counts how each run ended: exit 0 after its graceful
shutdown, or killed by the signal's default action (no handoff). Run it beside load (two
`yes > /dev/null`) to widen the race that `tests/deploy.rs` meets once in a while."""
import os
import signal
import socket
import subprocess
import sys
import tempfile

binary = os.environ.get("CHORUS_BIN", "target/release/chorus")
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
ended = {"exit 0": 0, "killed by SIGTERM": 0, "other": 0}
for run in range(runs):
    with tempfile.TemporaryDirectory(prefix="chorus-sigterm") as scratch:
        path = os.path.join(scratch, "notify.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(path)
        notify.settimeout(30)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            addr = f"127.0.0.1:{probe.getsockname()[1]}"
        node = subprocess.Popen(
            [binary, "node", "--listen", addr, "--join", addr, "--name", "a"],
            env=dict(os.environ, NOTIFY_SOCKET=path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        code = None
        try:
            if b"READY=1" in notify.recv(512):
                os.kill(node.pid, signal.SIGTERM)
                code = node.wait(30)
        except (OSError, subprocess.TimeoutExpired) as error:
            print(f"run {run}: {error}", file=sys.stderr)
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
            notify.close()
        if code == 0:
            ended["exit 0"] += 1
        elif code == -signal.SIGTERM:
            ended["killed by SIGTERM"] += 1
        else:
            ended["other"] += 1
print(f"{binary}: {runs} runs: " + ", ".join(f"{what} {count}" for what, count in ended.items()))
