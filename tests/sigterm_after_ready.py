#!/usr/bin/env python3
"""Usage: tests/sigterm_after_ready.py [RUNS] (CHORUS_BIN: the binary, default
target/release/chorus).

Starts a one-node cluster RUNS times (default 100) under a NOTIFY_SOCKET of its own, sends it
SIGTERM the instant READY=1 arrives, and counts how each run ended: exit 0 after its graceful
shutdown, killed by the signal's default action (no handoff), ran on (no exit within 30 s:
the signal went unseen), or another way (printed). Run it beside load (two
`yes > /dev/null`) to widen the race that `tests/deploy.rs` meets once in a while."""
import os
import signal
import socket
import subprocess
import sys
import tempfile

binary = os.environ.get("CHORUS_BIN", "target/release/chorus")
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
ended = {"exit 0": 0, "killed by SIGTERM": 0, "ran on": 0, "other": 0}
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
        code = outcome = None
        try:
            message = notify.recv(512)
            if b"READY=1" in message:
                os.kill(node.pid, signal.SIGTERM)
                code = node.wait(30)
            else:
                outcome = f"notified {message!r} first"
        except subprocess.TimeoutExpired:
            outcome = "ran on"
        except OSError as error:
            outcome = f"no READY=1: {error}"
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
            notify.close()
        if outcome == "ran on":
            ended["ran on"] += 1
        elif code == 0:
            ended["exit 0"] += 1
        elif code == -signal.SIGTERM:
            ended["killed by SIGTERM"] += 1
        else:
            ended["other"] += 1
            print(f"run {run}: {outcome or f'exit status {code}'}", file=sys.stderr)
print(f"{binary}: {runs} runs: " + ", ".join(f"{what} {count}" for what, count in ended.items()))
