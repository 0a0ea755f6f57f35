// SPEC §7 webhooks out, the hard guarantees: a failing endpoint never slows the others
// (measured), the concurrency caps hold, nothing is lost across kill -9 (the outbox is written
// with the event), SIGTERM lets in-flight attempts finish, and the SSRF policy holds at delivery.
import assert from 'node:assert/strict';
import dns from 'node:dns/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { startServer, test } from './lib/server.mjs';
import { request, sleep, waitFor } from './lib/http.mjs';
import { startReceiver, heraldApi, respond, assertVerified, waitDeliveries } from './lib/receiver.mjs';

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};

/** Publishes n events one by one on topic; returns {ids, sentAt: Map(id → performance.now() before the request)}. */
async function publishTimed(api, topic, n) {
  const sentAt = new Map();
  const ids = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const e = await api.publish(topic, { i });
    sentAt.set(e.id, t0);
    ids.push(e.id);
  }
  return { ids, sentAt };
}

function latencies(recv, path, { ids, sentAt }) {
  const first = new Map();
  for (const r of recv.matching({ path })) if (r.json && sentAt.has(r.json.id) && !first.has(r.json.id)) first.set(r.json.id, r.t);
  return ids.map((id) => first.get(id) - sentAt.get(id));
}

test('isolation: a never-answering endpoint does not slow a healthy one (measured)', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, {
    args: ['--webhook-allow-private', '--webhook-retry-schedule', '200ms,400ms', '--webhook-timeout', '5s', '--webhook-endpoint-concurrency', '4'],
  });
  const api = heraldApi(srv);
  recv.route('/hang', respond.hang());
  const healthy = await api.createOk({ url: recv.url('/fast'), topics: ['iso/**'] });
  recv.addSecret(healthy.secret);

  // Baseline: the healthy endpoint alone.
  const base = await publishTimed(api, 'iso/base', 50);
  await recv.waitEvents(base.ids, { path: '/fast', timeout: 5000 });
  const baseLat = latencies(recv, '/fast', base);

  // Now with an endpoint that never answers, on the same events.
  await api.createOk({ url: recv.url('/hang'), topics: ['iso/**'] });
  const start = performance.now();
  const load = await publishTimed(api, 'iso/load', 50);
  const published = performance.now();
  await recv.waitEvents(load.ids, { path: '/fast', timeout: 5000 });
  const done = performance.now();
  const lat = latencies(recv, '/fast', load);
  const report =
    `healthy endpoint latency, publish → arrival, 50 events: alone p50 ${pct(baseLat, 50).toFixed(1)} ms max ${Math.max(...baseLat).toFixed(1)} ms; ` +
    `beside a hanging endpoint p50 ${pct(lat, 50).toFixed(1)} ms max ${Math.max(...lat).toFixed(1)} ms; ` +
    `all 50 arrived ${(done - published).toFixed(0)} ms after the last publish (${(done - start).toFixed(0)} ms after the first); ` +
    `hanging endpoint: ${recv.matching({ path: '/hang' }).length} requests, at most ${recv.maxInflightByRoute.get('/hang') ?? 0} at once`;
  t.diagnostic(report);
  console.log(`# ${report}`);
  assert.ok(Math.max(...lat) < 2000, `every event reached the healthy endpoint within 2 s (max ${Math.max(...lat).toFixed(0)} ms)`);
  assert.ok(done - published < 2000, `all 50 within 2 s of the last publish (${(done - published).toFixed(0)} ms)`);
  assert.ok((recv.maxInflightByRoute.get('/hang') ?? 0) <= 4, 'the hanging endpoint holds at most --webhook-endpoint-concurrency attempts');
  for (const r of recv.matching({ path: '/fast' })) assert.deepEqual(r.verifiedBy, [healthy.secret]);
  await recv.stop(); // release the hanging attempts so shutdown is quick
});

test('concurrency caps: --webhook-endpoint-concurrency and --webhook-concurrency hold', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, {
    args: ['--webhook-allow-private', '--webhook-retry-schedule', '200ms', '--webhook-concurrency', '3', '--webhook-endpoint-concurrency', '2'],
  });
  const api = heraldApi(srv);
  const paths = ['/c1', '/c2', '/c3'];
  for (const p of paths) {
    recv.route(p, respond.delay(150));
    await api.createOk({ url: recv.url(p), topics: ['cap'] });
  }
  const ids = await api.batch(Array.from({ length: 8 }, (_, i) => ({ topic: 'cap', data: i })));
  for (const p of paths) await recv.waitEvents(ids, { path: p, timeout: 10000 });
  const per = Object.fromEntries(paths.map((p) => [p, recv.maxInflightByRoute.get(p)]));
  t.diagnostic(`max in flight: total ${recv.maxInflight}, per endpoint ${JSON.stringify(per)}`);
  assert.ok(recv.maxInflight <= 3, `global cap 3, saw ${recv.maxInflight}`);
  for (const p of paths) assert.ok(per[p] <= 2, `endpoint cap 2 on ${p}, saw ${per[p]}`);
});

test('slots come back: after timeouts, resets, 5xx and redirects the endpoint keeps delivering', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, {
    args: ['--webhook-allow-private', '--webhook-retry-schedule', Array(8).fill('100ms').join(','), '--webhook-timeout', '300ms', '--webhook-concurrency', '2', '--webhook-endpoint-concurrency', '2'],
  });
  const api = heraldApi(srv);
  // The first 9 requests fail in every way there is; then all is well.
  const bad = [respond.hang(), respond.destroy(), respond.ok(500), respond.hang(), respond.redirect('/x'), respond.destroy(), respond.hang(), respond.ok(503), respond.hang()];
  recv.route('/s', respond.sequence(...bad, respond.ok()));
  const ep = await api.createOk({ url: recv.url('/s'), topics: ['slots'] });
  const ids = await api.batch(Array.from({ length: 10 }, (_, i) => ({ topic: 'slots', data: i })));
  await recv.waitEvents(ids, { path: '/s', timeout: 8000 });
  await waitDeliveries(api, ep.id, (ds) => ds.length === 10 && ds.every((d) => d.status === 'succeeded'), { what: 'all 10 succeeded' });
  assert.ok(recv.maxInflight <= 2, `caps held throughout (max ${recv.maxInflight} in flight)`);
  await recv.stop();
});

test('crash safety: receiver down, kill -9, restart, receiver up → every event delivered', async (t) => {
  const recv = await startReceiver(t, { down: true }); // a port, closed: connection refused
  const schedule = Array(20).fill('300ms').join(',');
  const srv = await startServer(t, { args: ['--webhook-allow-private', '--webhook-retry-schedule', schedule, '--webhook-timeout', '2s'] });
  const api = heraldApi(srv);
  const ep = await api.createOk({ url: recv.url('/crash'), topics: ['crash/**'] });
  const ids = [];
  for (let i = 0; i < 10; i++) ids.push((await api.publish(`crash/${i % 3}`, { i })).id);
  ids.push(...(await api.batch(Array.from({ length: 10 }, (_, i) => ({ topic: 'crash/b', data: i })))));
  await api.publish('elsewhere', 'not matching');
  await sleep(500); // first attempts fail (connection refused) and are rescheduled
  const before = await api.deliveriesOk(ep.id);
  assert.equal(before.length, 20, 'one delivery per matching event');
  assert.ok(before.some((d) => d.attempts.length >= 1 && d.attempts[0].error), `attempts recorded with an error: ${JSON.stringify(before[0])}`);

  await srv.kill9();
  await srv.restart();
  await recv.start();
  const got = await recv.waitEvents(ids, { path: '/crash', timeout: 8000 });
  for (const r of got.values()) assertVerified(r, ep.secret);
  assert.deepEqual([...got.keys()].sort(), [...ids].sort());
  const ds = await waitDeliveries(api, ep.id, (x) => x.length === 20 && x.every((d) => d.status === 'succeeded'), { what: 'all succeeded' });
  assert.ok(ds.some((d) => d.attempts.length >= 2), 'attempts from before the crash are kept in the log');
  assert.equal(recv.matching({ filter: (r) => r.json?.topic === 'elsewhere' }).length, 0);
});

test('crash safety: kill -9 in the middle of deliveries → every event delivered at least once', async (t) => {
  const recv = await startReceiver(t);
  recv.route('/mid', respond.delay(50));
  const srv = await startServer(t, { args: ['--webhook-allow-private', '--webhook-retry-schedule', '200ms,200ms,200ms,200ms,200ms', '--webhook-endpoint-concurrency', '4'] });
  const api = heraldApi(srv);
  const ep = await api.createOk({ url: recv.url('/mid'), topics: ['mid'] });
  const ids = await api.batch(Array.from({ length: 100 }, (_, i) => ({ topic: 'mid', data: i })));
  await recv.waitRequests(10, { path: '/mid', timeout: 5000 });
  await srv.kill9();
  const beforeRestart = recv.requests.length;
  await srv.restart();
  const got = await recv.waitEvents(ids, { path: '/mid', timeout: 15000 });
  assert.equal(got.size, 100);
  for (const r of got.values()) assertVerified(r, ep.secret);
  await waitDeliveries(api, ep.id, (x) => x.length === 100 && x.every((d) => d.status === 'succeeded'), { what: '100 succeeded', timeout: 5000, limit: 1000 });
  const dups = recv.requests.length - 100;
  t.diagnostic(`${beforeRestart} requests before the kill, ${recv.requests.length} in all: ${dups} duplicates (at least once)`);
  const wid = new Set(recv.requests.map((r) => r.webhookId));
  assert.equal(wid.size, 100, 'duplicates carry the same webhook-id');
});

test('crash safety: kill -9 right after the 201, then graceful restart with retries pending', async (t) => {
  const recv = await startReceiver(t, { down: true });
  const srv = await startServer(t, { args: ['--webhook-allow-private', '--webhook-retry-schedule', Array(20).fill('300ms').join(',')] });
  const api = heraldApi(srv);
  const ep = await api.createOk({ url: recv.url('/k'), topics: ['k'] });
  const e1 = await api.publish('k', 1);
  srv.process.kill('SIGKILL'); // right after the acknowledgement
  await srv.kill9();
  await srv.restart();
  const e2 = await api.publish('k', 2);
  await sleep(400);
  await srv.restart(); // SIGTERM with retries pending, exit 0 expected
  await recv.start();
  const got = await recv.waitEvents([e1.id, e2.id], { path: '/k', timeout: 8000 });
  for (const r of got.values()) assertVerified(r, ep.secret);
});

test('SIGTERM lets an in-flight attempt finish; its success is kept', async (t) => {
  const recv = await startReceiver(t);
  recv.route('/slow', respond.delay(1500));
  const srv = await startServer(t, { args: ['--webhook-allow-private', '--webhook-retry-schedule', '200ms,200ms', '--webhook-timeout', '10s'] });
  const api = heraldApi(srv);
  const ep = await api.createOk({ url: recv.url('/slow'), topics: ['s'] });
  const e = await api.publish('s', 'x');
  await recv.waitRequests(1);
  const t0 = performance.now();
  await srv.stop(); // asserts exit 0
  const took = performance.now() - t0;
  assert.ok(took >= 1000, `shutdown waited for the in-flight attempt (${took.toFixed(0)} ms)`);
  await srv.restart();
  const [d] = await waitDeliveries(api, ep.id, (ds) => ds.length === 1 && ds[0].status === 'succeeded', { what: 'succeeded', timeout: 3000 });
  assert.equal(d.event_id, e.id);
  await sleep(500);
  assert.equal(recv.requests.length, 1, 'not sent again after the restart');
});

test('SIGTERM with an attempt that never answers: exit 0 within about 10 s', async (t) => {
  const recv = await startReceiver(t);
  recv.route('/hang', respond.hang());
  const srv = await startServer(t, { args: ['--webhook-allow-private', '--webhook-retry-schedule', '200ms', '--webhook-timeout', '60s'] });
  const api = heraldApi(srv);
  await api.createOk({ url: recv.url('/hang'), topics: ['h'] });
  await api.publish('h', 'x');
  await recv.waitRequests(1);
  const t0 = performance.now();
  await srv.stop({ timeout: 14000 });
  const took = performance.now() - t0;
  t.diagnostic(`shutdown took ${took.toFixed(0)} ms`);
  assert.ok(took < 12000, `exit within ~10 s (${took.toFixed(0)} ms)`);
});

test('SSRF policy at delivery: a name that resolves to loopback is not connected to', async (t) => {
  const name = os.hostname();
  let addrs = [];
  try {
    addrs = await dns.lookup(name, { all: true });
  } catch {
    addrs = [];
  }
  const loop = addrs.find((a) => a.family === 4 && /^(127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(a.address));
  if (!loop) {
    t.skip(`hostname ${name} does not resolve to a private IPv4 address here`);
    return;
  }
  const recv = await startReceiver(t, { host: '0.0.0.0' });
  const srv = await startServer(t, { args: ['--webhook-retry-schedule', '100ms,100ms'] });
  const api = heraldApi(srv);
  const url = `http://${name}:${recv.port}/ssrf`;
  const res = await api.create({ url, topics: ['ssrf'] });
  t.diagnostic(`${url} (${name} → ${loop.address}) registered: ${res.status}`);
  if (res.status === 400) {
    assert.equal(res.json.error, 'invalid_url'); // refused already at registration: fine too
    return;
  }
  assert.equal(res.status, 201, res.text);
  await api.publish('ssrf', 'x');
  const [d] = await waitDeliveries(api, res.json.id, (ds) => ds[0]?.status === 'dead', { what: 'dead', timeout: 4000 });
  for (const a of d.attempts) assert.ok(a.error && !a.status_code, `refused before connecting: ${JSON.stringify(a)}`);
  assert.equal(recv.requests.length, 0, `${name} → ${loop.address} was connected to`);

  // With --webhook-allow-private a name (localhost) is resolved and delivered to.
  const srv2 = await startServer(t, { args: ['--webhook-allow-private', '--webhook-retry-schedule', '100ms,100ms'] });
  const api2 = heraldApi(srv2);
  await api2.createOk({ url: `http://localhost:${recv.port}/named`, topics: ['named'] });
  const e = await api2.publish('named', 'y');
  await recv.waitEvents([e.id], { path: '/named', timeout: 4000 });
  await waitFor(async () => (await request(`${srv2.url}/healthz`)).status === 200);
});

// Several failing endpoints together could hold every slot of the global cap (here 2 × 4 = 8):
// herald stops counting an attempt that waits over 1 s toward the global cap, so the healthy
// endpoint is not held up by their timeouts.
test('isolation: failing endpoints that fill the global cap do not stall a healthy one', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, {
    args: ['--webhook-allow-private', '--webhook-retry-schedule', '200ms', '--webhook-timeout', '5s', '--webhook-concurrency', '8', '--webhook-endpoint-concurrency', '4'],
  });
  const api = heraldApi(srv);
  recv.route('/hang1', respond.hang());
  recv.route('/hang2', respond.hang());
  await api.createOk({ url: recv.url('/hang1'), topics: ['cap/**'] });
  await api.createOk({ url: recv.url('/hang2'), topics: ['cap/**'] });
  await api.createOk({ url: recv.url('/ok'), topics: ['cap/**'] });
  const ids = await api.batch(Array.from({ length: 20 }, (_, i) => ({ topic: 'cap/x', data: i })));
  const t0 = performance.now();
  try {
    await recv.waitEvents(ids, { path: '/ok', timeout: 2000 });
  } finally {
    t.diagnostic(`healthy endpoint: ${new Set(recv.matching({ path: '/ok' }).map((r) => r.json.id)).size}/20 after ${(performance.now() - t0).toFixed(0)} ms; in flight at the hanging ones: ${recv.maxInflightByRoute.get('/hang1')}+${recv.maxInflightByRoute.get('/hang2')}`);
    await recv.stop();
  }
});
