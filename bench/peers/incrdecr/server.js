// The reference peer for presenced's benchmarks (bench/compare.sh): the
// design note's presence server written literally. Express serves the
// dashboard, Socket.IO takes the app's clients, and the online count is a
// Redis string kept with INCR on every connection and DECR on every
// disconnect. This is the design presenced replaces; it is kept as
// written, faults included (a killed process never DECRs, a Redis restart
// loses the count, several tabs count several times), because the
// benchmarks measure against it.
//
//   PORT=3000 REDIS_URL=redis://127.0.0.1:6379 JWT_SECRET=... ADMIN_TOKEN=... node server.js
'use strict';

const http = require('http');
const express = require('express');
const { Server } = require('socket.io');
const { createClient } = require('redis');
const jwt = require('jsonwebtoken');

const PORT = Number(process.env.PORT || 3000);
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const JWT_SECRET = process.env.JWT_SECRET || '';
const ADMIN_TOKEN = process.env.ADMIN_TOKEN || '';
const KEY = process.env.ONLINE_USERS_KEY || 'online_users';

if (!JWT_SECRET || !ADMIN_TOKEN) {
  console.error('JWT_SECRET and ADMIN_TOKEN must be set');
  process.exit(2);
}

const redis = createClient({ url: REDIS_URL });
redis.on('error', (err) => console.error('Redis error:', err.message));
redis.on('connect', () => console.log('Redis client connecting...'));
redis.on('ready', () => console.log('Redis client ready'));

const app = express();
const server = http.createServer(app);
const io = new Server(server, { cors: { origin: '*' } });

function requireAdmin(req, res, next) {
  if (req.get('authorization') !== `Bearer ${ADMIN_TOKEN}`) {
    return res.status(401).json({ error: 'unauthorized' });
  }
  next();
}

app.get('/healthz', (req, res) => res.json({ status: 'ok' }));

// The dashboard overview: the online count straight from Redis.
app.get('/api/admin/dashboard/overview', requireAdmin, async (req, res) => {
  try {
    const n = await redis.get(KEY);
    res.json({
      onlineUsers: Number(n || 0),
      source: 'redis',
      stale: false,
      generatedAt: new Date().toISOString(),
    });
  } catch (err) {
    res.status(503).json({ error: 'redis unavailable' });
  }
});

// Clients authenticate with a JWT in the Socket.IO handshake's auth.token.
io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  jwt.verify(token, JWT_SECRET, { algorithms: ['HS256'] }, (err, claims) => {
    if (err) return next(new Error('unauthorized'));
    socket.data.userId = claims.sub;
    next();
  });
});

io.on('connection', (socket) => {
  redis.incr(KEY).catch((err) => console.error('INCR failed:', err.message));
  socket.on('disconnect', () => {
    redis.decr(KEY).catch((err) => console.error('DECR failed:', err.message));
  });
});

async function main() {
  await redis.connect();
  console.log('Redis connected successfully');
  server.listen(PORT, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${PORT}`));
}

function shutdown() {
  io.close();
  server.close();
  redis.quit().finally(() => process.exit(0));
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
