// What the Node.js suites share: the nodes' addresses and bounded polling.

/** How long a write made on one node may take to be seen on another. */
export const REPLICATION_DEADLINE_MS = Number(process.env.REPLICATION_DEADLINE_S ?? 10) * 1000;

/** The Redis address of node `name` (A, B or C) as { host, port }, from run.sh. */
export function node(name) {
  const value = process.env[`CHORUS_REDIS_${name}`];
  if (!value) throw new Error(`CHORUS_REDIS_${name} is not set: run tests/clients/run.sh`);
  const at = value.lastIndexOf(':');
  return { host: value.slice(0, at), port: Number(value.slice(at + 1)) };
}

/** A key prefix of one test alone. */
export function prefix(suite) {
  return `${suite}:${process.pid}:${Math.random().toString(16).slice(2, 10)}:`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls `read` until `done(value)` holds, for at most `deadlineMs` (and 1000 tries); returns
 * the last value read, so the caller's assertion shows what was there.
 */
export async function eventually(read, done, deadlineMs = REPLICATION_DEADLINE_MS) {
  const deadline = Date.now() + deadlineMs;
  let value = await read();
  for (let tries = 0; tries < 1000 && !done(value) && Date.now() < deadline; tries++) {
    await sleep(20);
    value = await read();
  }
  return value;
}

/**
 * Messages collected as they arrive; `waitFor(predicate)` resolves with the first that matches
 * (already there or arriving within the deadline), or with undefined at the deadline.
 */
export class Inbox {
  constructor() {
    this.seen = [];
    this.waiters = [];
  }

  push(message) {
    this.seen.push(message);
    for (const waiter of [...this.waiters]) waiter();
  }

  waitFor(predicate, deadlineMs = REPLICATION_DEADLINE_MS) {
    const found = () => this.seen.find(predicate);
    if (found()) return Promise.resolve(found());
    return new Promise((resolve) => {
      const waiter = () => {
        const message = found();
        if (message) finish(message);
      };
      const timer = setTimeout(() => finish(undefined), deadlineMs);
      const finish = (message) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(message);
      };
      this.waiters.push(waiter);
    });
  }
}

/**
 * A TCP proxy on 127.0.0.1 to `target` that records what the client sent, so a test can tell
 * which commands a client's handshake really used. `commands()` decodes the recorded RESP
 * arrays into lists of strings.
 */
export async function recordingProxy(target) {
  const net = await import('node:net');
  const sent = [];
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => {
      sent.push(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => client.write(chunk));
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    host: '127.0.0.1',
    port: server.address().port,
    commands: () => decodeCommands(Buffer.concat(sent)),
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** RESP request arrays (`*N $len arg ...`) in `bytes`, each as a list of strings. */
function decodeCommands(bytes) {
  const commands = [];
  let at = 0;
  const line = () => {
    const end = bytes.indexOf('\r\n', at);
    if (end < 0) throw new Error('truncated');
    const text = bytes.subarray(at, end).toString();
    at = end + 2;
    return text;
  };
  try {
    while (at < bytes.length) {
      const header = line();
      if (!header.startsWith('*')) {
        commands.push(header.split(' ')); // an inline command
        continue;
      }
      const args = [];
      for (let n = Number(header.slice(1)); n > 0; n--) {
        const length = Number(line().slice(1));
        args.push(bytes.subarray(at, at + length).toString());
        at += length + 2;
      }
      commands.push(args);
    }
  } catch {
    // A request cut short at the end: the ones before it are enough.
  }
  return commands;
}
