// A tiny Express app keeping its sessions in Redis through express-session and connect-redis,
// as a web application does. tests/clients/node/sessions.test.mjs starts two of them, one on
// each chorus node, with no sticky routing between them.
//
//   REDIS_HOST=127.0.0.1 REDIS_PORT=6379 node session-app.mjs
//
// Listens on a free port of 127.0.0.1 and prints `listening PORT` when ready. Exits when its
// standard input closes, so it never outlives the test that started it.
import { RedisStore } from 'connect-redis';
import express from 'express';
import session from 'express-session';
import { createClient } from 'redis';

const redis = createClient({
  socket: { host: process.env.REDIS_HOST, port: Number(process.env.REDIS_PORT), reconnectStrategy: false },
});
redis.on('error', (error) => console.error(`redis: ${error.message}`));
await redis.connect();

const store = new RedisStore({ client: redis, prefix: 'sess:' });
const app = express();
app.use(
  session({
    store,
    secret: 'chorus-client-tests',
    resave: false,
    saveUninitialized: false,
    cookie: { maxAge: 600_000, httpOnly: true },
    name: 'sid',
  }),
);

const view = (req) => ({ id: req.sessionID, user: req.session.user ?? null, visits: req.session.visits ?? 0 });

// Logs in: the session gets a user and is written (SET sess:ID ... EX ttl).
app.get('/login', (req, res) => {
  req.session.user = String(req.query.user);
  req.session.visits = 1;
  res.json(view(req));
});
// Reads the session without changing it (GET, then EXPIRE for express-session's touch).
app.get('/whoami', (req, res) => res.json(view(req)));
// Changes the session (GET, then SET ... EX).
app.get('/visit', (req, res) => {
  req.session.visits = (req.session.visits ?? 0) + 1;
  res.json(view(req));
});
// Every session the store holds: connect-redis's all() is SCAN MATCH sess:* then MGET.
app.get('/sessions', (req, res, next) => {
  store.all((error, sessions) => {
    if (error) return next(error);
    res.json(sessions.map((s) => ({ id: s.id, user: s.user ?? null })));
  });
});
// Logs out: the session is destroyed (DEL).
app.get('/logout', (req, res, next) => {
  req.session.destroy((error) => (error ? next(error) : res.json({ ok: true })));
});
app.use((error, req, res, next) => {
  res.status(500).json({ error: String(error?.message ?? error) });
});

const server = app.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
