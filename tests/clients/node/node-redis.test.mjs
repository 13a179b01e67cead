// node-redis (npm `redis`, the version package.json pins) against chorus: its handshake
// (HELLO 3 by default, none with RESP 2), strings, hashes, MULTI, scanIterator, databases,
// and a subscription on node B that sees writes made on node A.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { createClient } from 'redis';

import { Inbox, eventually, node, prefix, recordingProxy } from './lib.mjs';

const clients = [];

/** A connected node-redis client of node `name`; `via` connects through a proxy instead. */
async function connect(name, { via, ...options } = {}) {
  const { host, port } = via ?? node(name);
  const client = createClient({
    socket: { host, port, connectTimeout: 10_000, reconnectStrategy: false },
    ...options,
  });
  const errors = [];
  client.on('error', (error) => errors.push(error));
  clients.push(client);
  await client.connect();
  assert.ok(client.isReady, `node-redis is ready (errors: ${errors.join('; ')})`);
  return client;
}

after(async () => {
  for (const client of clients) {
    if (client.isOpen) client.destroy();
  }
});

for (const [label, resp] of [['default protocol', undefined], ['RESP 2', 2]]) {
  const options = resp === undefined ? {} : { RESP: resp };

  describe(`node-redis, ${label}`, () => {
    test('connects: handshake with a client name', { timeout: 30_000 }, async () => {
      const proxy = await recordingProxy(node('A'));
      try {
        const client = await connect('A', { ...options, via: proxy, name: 'node-redis-test' });
        const sent = proxy.commands().map((args) => args.join(' '));
        const first = sent[0] ?? '';
        if (resp === 2) {
          assert.ok(!sent.some((c) => c.toUpperCase().startsWith('HELLO')), `no HELLO with RESP 2: ${sent}`);
          assert.ok(sent.some((c) => /^CLIENT SETNAME/i.test(c)), `sent: ${sent}`);
        } else {
          assert.match(first, /^HELLO 3\b/i, `node-redis's first command: ${sent}`);
        }
        assert.equal(await client.ping(), 'PONG');
        assert.equal(await client.clientGetName(), 'node-redis-test');
        assert.ok(Number.isInteger(await client.clientId()));
        assert.match(await client.info('server'), /redis_version:/);
        client.destroy();
      } finally {
        await proxy.close();
      }
    });

    test('set/get with TTL, mGet, del', { timeout: 30_000 }, async () => {
      const client = await connect('A', options);
      const p = prefix('node-redis');
      assert.equal(await client.set(`${p}k`, 'v1', { expiration: { type: 'EX', value: 100 } }), 'OK');
      assert.equal(await client.get(`${p}k`), 'v1');
      const ttl = await client.ttl(`${p}k`);
      assert.ok(ttl >= 1 && ttl <= 100, `TTL ${ttl} within 1..100`);
      assert.equal(await client.set(`${p}k`, 'v2', { condition: 'NX' }), null);
      assert.equal(await client.expire(`${p}k`, 50), 1);
      assert.equal(await client.persist(`${p}k`), 1);
      assert.equal(await client.ttl(`${p}k`), -1);
      await client.mSet({ [`${p}a`]: '1', [`${p}b`]: '2' });
      assert.deepEqual(await client.mGet([`${p}a`, `${p}missing`, `${p}b`]), ['1', null, '2']);
      assert.equal(await client.del([`${p}a`, `${p}b`, `${p}missing`]), 2);
      assert.equal(await client.get(`${p}a`), null);
    });

    test('hashes, MULTI/EXEC, scanIterator', { timeout: 30_000 }, async () => {
      const client = await connect('A', options);
      const p = prefix('node-redis');
      assert.equal(await client.hSet(`${p}h`, { name: 'Ada', lang: 'ts' }), 2);
      assert.deepEqual({ ...(await client.hGetAll(`${p}h`)) }, { name: 'Ada', lang: 'ts' });
      assert.equal(await client.hGet(`${p}h`, 'lang'), 'ts');
      const results = await client.multi().set(`${p}m`, 'x').get(`${p}m`).hLen(`${p}h`).exec();
      assert.deepEqual(results, ['OK', 'x', 2]);
      const wanted = new Set();
      for (let i = 0; i < 50; i++) wanted.add(`${p}scan:${i}`);
      await client.mSet([...wanted].map((key) => [key, 'v']));
      const seen = [];
      for await (const keys of client.scanIterator({ MATCH: `${p}scan:*`, COUNT: 9 })) seen.push(...keys);
      assert.equal(seen.length, wanted.size, 'every key once');
      assert.deepEqual(new Set(seen), wanted);
    });

    test('database option, read on another node', { timeout: 30_000 }, async () => {
      const onA = await connect('A', { ...options, database: 4 });
      const onB = await connect('B', { ...options, database: 4 });
      const p = prefix('node-redis');
      assert.equal(await onA.set(`${p}db4`, 'four'), 'OK');
      assert.equal(await eventually(() => onB.get(`${p}db4`), (v) => v === 'four'), 'four');
      const onBdb0 = await connect('B', options);
      assert.equal(await onBdb0.get(`${p}db4`), null, 'db 0 does not see db 4');
    });

    test('a subscription on node B sees writes made on node A', { timeout: 30_000 }, async () => {
      const writer = await connect('A', options);
      const reader = await connect('B', options);
      const subscriber = reader.duplicate();
      subscriber.on('error', () => {});
      clients.push(subscriber);
      await subscriber.connect();
      const p = prefix('node-redis');
      const inbox = new Inbox();
      await subscriber.pSubscribe('__keyevent@0__:*', (message, channel) =>
        inbox.push({ kind: 'pmessage', channel, message }),
      );
      await subscriber.subscribe(`__keyspace@0__:${p}watched`, (message, channel) =>
        inbox.push({ kind: 'message', channel, message }),
      );
      await writer.set(`${p}watched`, 'v');
      const event = await inbox.waitFor((m) => m.kind === 'pmessage' && m.message === `${p}watched`);
      assert.deepEqual(
        event,
        { kind: 'pmessage', channel: '__keyevent@0__:set', message: `${p}watched` },
        `messages seen: ${JSON.stringify(inbox.seen)}`,
      );
      const keyspace = await inbox.waitFor((m) => m.kind === 'message');
      assert.deepEqual(keyspace, { kind: 'message', channel: `__keyspace@0__:${p}watched`, message: 'set' });
      await writer.del(`${p}watched`);
      const deleted = await inbox.waitFor((m) => m.kind === 'pmessage' && m.channel === '__keyevent@0__:del');
      assert.equal(deleted?.message, `${p}watched`, `messages seen: ${JSON.stringify(inbox.seen)}`);
      await subscriber.pUnsubscribe();
      await subscriber.unsubscribe();
      // The same connection serves commands again once unsubscribed.
      assert.equal(await subscriber.get(`${p}watched`), null);
    });
  });
}
