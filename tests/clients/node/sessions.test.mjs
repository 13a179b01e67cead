// The sessions scenario: two instances of an Express app (session-app.mjs) keep their sessions
// with express-session and connect-redis, instance 1 on node A's Redis port and instance 2 on
// node B's, with no sticky routing. A user logs in through instance 1; the same cookie is then
// recognised by instance 2, changes made there are seen by instance 1, and a logout on one
// instance logs the user out on the other.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { createClient } from 'redis';

import { eventually, node } from './lib.mjs';

const appPath = fileURLToPath(new URL('./session-app.mjs', import.meta.url));
const apps = [];

/** Starts session-app.mjs against node `name`; resolves with its base URL once it listens. */
function startApp(name) {
  const { host, port } = node(name);
  const child = spawn(process.execPath, [appPath], {
    env: { ...process.env, REDIS_HOST: host, REDIS_PORT: String(port) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  apps.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`app on node ${name} did not listen within 15 s`)), 15_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`app on node ${name} exited with ${code} before listening`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /^listening (\d+)$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${match[1]}`);
      }
    });
  });
}

/** Stops an app: its stdin closes (it exits by itself), then SIGKILL after 5 s. */
function stopApp(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.on('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.stdin.end();
  });
}

let app1;
let app2;
let redisA;

before(async () => {
  [app1, app2] = await Promise.all([startApp('A'), startApp('B')]);
  redisA = createClient({ socket: { ...node('A'), reconnectStrategy: false } });
  redisA.on('error', () => {});
  await redisA.connect();
});

after(async () => {
  redisA?.destroy();
  await Promise.all(apps.map(stopApp));
});

/** GET `path` on an app with the session cookie (if any); the JSON body and the Set-Cookie. */
async function get(base, path, cookie) {
  const response = await fetch(base + path, {
    headers: cookie ? { cookie } : {},
    signal: AbortSignal.timeout(10_000),
  });
  const body = await response.json();
  assert.equal(response.status, 200, `${path}: ${JSON.stringify(body)}`);
  const setCookie = response.headers.getSetCookie().map((c) => c.split(';')[0]);
  return { body, cookie: setCookie.find((c) => c.startsWith('sid=')) };
}

test('a session written through instance 1 (node A) is read through instance 2 (node B)', { timeout: 60_000 }, async () => {
  const user = `ada-${process.pid}`;
  const login = await get(app1, `/login?user=${user}`);
  assert.ok(login.cookie, 'the login answer sets the session cookie');
  assert.deepEqual(login.body.user, user);
  const cookie = login.cookie;
  const id = login.body.id;

  // connect-redis wrote sess:ID with SET ... EX ttl on node A.
  const ttl = await redisA.ttl(`sess:${id}`);
  assert.ok(ttl > 0 && ttl <= 600, `the session key has the cookie's TTL (TTL ${ttl})`);

  // Instance 2 knows the user as soon as node B has the session (GET sess:ID on node B).
  const seen = await eventually(
    () => get(app2, '/whoami', cookie).then((r) => r.body),
    (body) => body.user === user,
  );
  assert.deepEqual(seen, { id, user, visits: 1 }, 'instance 2 reads the session instance 1 wrote');

  // A change made through instance 2 (SET on node B) is seen through instance 1.
  const visit = await get(app2, '/visit', cookie);
  assert.equal(visit.body.visits, 2);
  const back = await eventually(
    () => get(app1, '/whoami', cookie).then((r) => r.body),
    (body) => body.visits === 2,
  );
  assert.deepEqual(back, { id, user, visits: 2 }, 'instance 1 reads the change made through instance 2');

  // connect-redis's all(): SCAN MATCH sess:* and MGET, on node B.
  const sessions = await eventually(
    () => get(app2, '/sessions', cookie).then((r) => r.body),
    (list) => list.some((s) => s.id === id),
  );
  assert.ok(
    sessions.some((s) => s.id === id && s.user === user),
    `instance 2 lists the session: ${JSON.stringify(sessions)}`,
  );

  // A logout through instance 1 (DEL on node A) logs the user out of instance 2 too.
  assert.deepEqual((await get(app1, '/logout', cookie)).body, { ok: true });
  const gone = await eventually(
    () => get(app2, '/whoami', cookie).then((r) => r.body),
    (body) => body.user === null,
  );
  assert.equal(gone.user, null, 'instance 2 no longer knows the user after the logout on instance 1');
  assert.equal(await redisA.exists(`sess:${id}`), 0);
});

test('two users on two instances keep separate sessions', { timeout: 60_000 }, async () => {
  const one = await get(app1, `/login?user=one-${process.pid}`);
  const two = await get(app2, `/login?user=two-${process.pid}`);
  assert.notEqual(one.body.id, two.body.id);
  const onTwo = await eventually(
    () => get(app2, '/whoami', one.cookie).then((r) => r.body),
    (body) => body.user === `one-${process.pid}`,
  );
  assert.equal(onTwo.user, `one-${process.pid}`);
  const onOne = await eventually(
    () => get(app1, '/whoami', two.cookie).then((r) => r.body),
    (body) => body.user === `two-${process.pid}`,
  );
  assert.equal(onOne.user, `two-${process.pid}`);
  // No cookie, no session: a stranger is nobody on either instance.
  assert.equal((await get(app1, '/whoami')).body.user, null);
  assert.equal((await get(app2, '/whoami')).body.user, null);
});
