// ioredis 6 against chorus: its handshake and INFO ready check, strings, hashes, pipelines,
// MULTI, SCAN, databases, and a subscription on node B that sees writes made on node A.
// With ioredis's default protocol (RESP3 in ioredis 6) and with protocol 2.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import Redis from 'ioredis';

import { Inbox, eventually, node, prefix, recordingProxy } from './lib.mjs';

const clients = [];

/** A connected ioredis client of node `name`; fails the test if it never becomes ready. */
async function connect(name, options = {}) {
  const client = new Redis({
    ...(options.via ?? node(name)),
    lazyConnect: true,
    connectTimeout: 10_000,
    commandTimeout: 10_000,
    maxRetriesPerRequest: 1,
    // A failed connection fails the test instead of retrying forever.
    retryStrategy: () => null,
    ...options,
  });
  clients.push(client);
  const errors = [];
  client.on('error', (error) => errors.push(error));
  await client.connect();
  assert.equal(client.status, 'ready', `ioredis is ready (errors: ${errors.join('; ')})`);
  return client;
}

after(async () => {
  for (const client of clients) client.disconnect();
});

for (const [label, protocol] of [['default protocol (RESP3)', undefined], ['protocol 2', 2]]) {
  const options = protocol === undefined ? {} : { protocol };

  describe(`ioredis, ${label}`, () => {
    test('connects: handshake, CLIENT SETNAME, INFO ready check', { timeout: 30_000 }, async () => {
      // Through a proxy that records what ioredis sends, to see its handshake.
      const proxy = await recordingProxy(node('A'));
      try {
        const client = await connect('A', { ...options, via: proxy, connectionName: 'ioredis-test' });
        const handshake = proxy.commands().map((args) => args.slice(0, 2).join(' ').toUpperCase());
        if (protocol === undefined) assert.equal(handshake[0], 'HELLO 3', `sent: ${handshake}`);
        assert.ok(handshake.includes('CLIENT SETNAME'), `sent: ${handshake}`);
        assert.ok(handshake.includes('INFO'), `ioredis's ready check (INFO) passed: ${handshake}`);
        assert.equal(await client.ping(), 'PONG');
        assert.equal(await client.client('GETNAME'), 'ioredis-test');
        assert.match(await client.info(), /^loading:0\r?$/m);
        assert.equal(await client.quit(), 'OK');
      } finally {
        await proxy.close();
      }
    });

    test('set/get with TTL, mget, del', { timeout: 30_000 }, async () => {
      const client = await connect('A', options);
      const p = prefix('ioredis');
      assert.equal(await client.set(`${p}k`, 'v1', 'EX', 100), 'OK');
      assert.equal(await client.get(`${p}k`), 'v1');
      const ttl = await client.ttl(`${p}k`);
      assert.ok(ttl >= 1 && ttl <= 100, `TTL ${ttl} within 1..100`);
      assert.equal(await client.set(`${p}k`, 'v2', 'NX'), null);
      assert.equal(await client.set(`${p}k`, 'v2', 'XX', 'GET'), 'v1');
      assert.equal(await client.mset(`${p}a`, '1', `${p}b`, '2'), 'OK');
      assert.deepEqual(await client.mget(`${p}a`, `${p}missing`, `${p}b`), ['1', null, '2']);
      assert.equal(await client.del(`${p}a`, `${p}b`, `${p}missing`), 2);
      assert.equal(await client.exists(`${p}a`), 0);
      // Binary values come back byte for byte.
      const bytes = Buffer.from([0, 1, 2, 255, 13, 10, 36]);
      await client.set(`${p}bin`, bytes);
      assert.deepEqual(await client.getBuffer(`${p}bin`), bytes);
    });

    test('hashes', { timeout: 30_000 }, async () => {
      const client = await connect('A', options);
      const p = prefix('ioredis');
      assert.equal(await client.hset(`${p}h`, { name: 'Ada', lang: 'js' }), 2);
      assert.deepEqual(await client.hgetall(`${p}h`), { name: 'Ada', lang: 'js' });
      assert.deepEqual(await client.hmget(`${p}h`, 'lang', 'missing'), ['js', null]);
      assert.equal(await client.hdel(`${p}h`, 'lang'), 1);
      assert.deepEqual(await client.hkeys(`${p}h`), ['name']);
      assert.deepEqual(await client.hgetall(`${p}missing`), {});
    });

    test('pipeline, MULTI/EXEC and scanStream', { timeout: 30_000 }, async () => {
      const client = await connect('A', options);
      const p = prefix('ioredis');
      const piped = await client.pipeline().set(`${p}p1`, 'one').get(`${p}p1`).hlen(`${p}none`).exec();
      assert.deepEqual(piped, [[null, 'OK'], [null, 'one'], [null, 0]]);
      const multi = await client.multi().set(`${p}m1`, 'x').expire(`${p}m1`, 100).get(`${p}m1`).exec();
      assert.deepEqual(multi, [[null, 'OK'], [null, 1], [null, 'x']]);
      const wanted = new Set();
      for (let i = 0; i < 60; i++) wanted.add(`${p}scan:${i}`);
      await client.mset(...[...wanted].flatMap((key) => [key, 'v']));
      const seen = [];
      const stream = client.scanStream({ match: `${p}scan:*`, count: 7 });
      for await (const keys of stream) seen.push(...keys);
      assert.equal(seen.length, wanted.size, 'every key once');
      assert.deepEqual(new Set(seen), wanted);
    });

    test('db option (SELECT on connect), read on another node', { timeout: 30_000 }, async () => {
      const onA = await connect('A', { ...options, db: 2 });
      const onB = await connect('B', { ...options, db: 2 });
      const onBdb0 = await connect('B', options);
      const p = prefix('ioredis');
      assert.equal(await onA.set(`${p}db2`, 'two'), 'OK');
      assert.equal(await eventually(() => onB.get(`${p}db2`), (v) => v === 'two'), 'two');
      assert.equal(await onBdb0.get(`${p}db2`), null, 'db 0 does not see db 2');
    });

    test('a subscription on node B sees writes made on node A', { timeout: 30_000 }, async () => {
      const subscriber = await connect('B', options);
      const writer = await connect('A', options);
      const p = prefix('ioredis');
      const inbox = new Inbox();
      subscriber.on('pmessage', (pattern, channel, message) =>
        inbox.push({ kind: 'pmessage', pattern, channel, message }),
      );
      subscriber.on('message', (channel, message) => inbox.push({ kind: 'message', channel, message }));
      assert.equal(await subscriber.psubscribe('__keyevent@0__:*'), 1);
      assert.equal(await subscriber.subscribe(`__keyspace@0__:${p}watched`), 2);

      await writer.set(`${p}watched`, 'v');
      const event = await inbox.waitFor((m) => m.kind === 'pmessage' && m.message === `${p}watched`);
      assert.deepEqual(
        event,
        { kind: 'pmessage', pattern: '__keyevent@0__:*', channel: '__keyevent@0__:set', message: `${p}watched` },
        `messages seen: ${JSON.stringify(inbox.seen)}`,
      );
      const keyspace = await inbox.waitFor((m) => m.kind === 'message');
      assert.deepEqual(keyspace, { kind: 'message', channel: `__keyspace@0__:${p}watched`, message: 'set' });

      await writer.hset(`${p}hash`, 'f', 'v');
      const hset = await inbox.waitFor((m) => m.kind === 'pmessage' && m.message === `${p}hash`);
      assert.equal(hset?.channel, '__keyevent@0__:hset', `messages seen: ${JSON.stringify(inbox.seen)}`);

      assert.equal(await subscriber.punsubscribe('__keyevent@0__:*'), 1);
      assert.equal(await subscriber.unsubscribe(), 0);
    });
  });
}
