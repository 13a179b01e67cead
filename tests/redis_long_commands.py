"""How long a node's other Redis clients wait while one connection runs long commands
(ARCHITECTURE.md, "Long Redis commands share the Redis thread"). Python 3's standard library
only; not run by .ci/run.

Usage: python3 tests/redis_long_commands.py HOST:PORT [KEYS]  (a node started with --redis)
Loads KEYS string keys (MSET, 10,000 per request), then for DBSIZE and KEYS *: the time of one
command alone (median of 5), and the longest and median PING round trip on a second connection
while a first one, in another process, runs the command in a loop.
"""
import multiprocessing, socket, sys, time, statistics

def enc(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

class Conn:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")
    def call(self, *args):
        self.s.sendall(enc(*args))
        return self.read()
    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-", b":"):
            return rest
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if t == b"*":
            return [self.read() for _ in range(int(rest))]
        raise ValueError(line)

def loop(addr, command, stop):
    d = Conn(addr)
    while not stop.is_set():
        d.call(*command)

addr = sys.argv[1]
keys = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
c = Conn(addr)
for start in range(0, keys, 10_000):
    args = ["MSET"]
    for n in range(start, min(keys, start + 10_000)):
        args += ["key:%07d" % n, "v"]
    assert c.call(*args) == b"OK"
for command in (["DBSIZE"], ["KEYS", "*"]):
    alone = []
    for _ in range(5):
        t = time.perf_counter(); c.call(*command); alone.append(time.perf_counter() - t)
    # The command loops in a process of its own: in a thread, parsing a large reply held
    # Python's lock and the PINGs' times included the wait for it.
    stop = multiprocessing.Event()
    th = multiprocessing.Process(target=loop, args=(addr, command, stop)); th.start()
    time.sleep(0.2)
    p = Conn(addr); pings = []
    end = time.perf_counter() + 3
    while time.perf_counter() < end:
        t = time.perf_counter(); p.call("PING"); pings.append(time.perf_counter() - t)
    stop.set(); th.join()
    print("%-7s alone median %7.1f ms | PING during it: %5d pings, median %6.2f ms, max %7.1f ms"
          % (command[0], statistics.median(alone) * 1e3, len(pings),
             statistics.median(pings) * 1e3, max(pings) * 1e3))
