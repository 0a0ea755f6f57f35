// SPEC §7 webhooks out, the edges: every way an event enters the store feeds the outbox (HTTP,
// batch, WebSocket, webhooks in) and an idempotent repeat does not; jitter in both directions;
// Retry-After capped at 1 h; state that must survive kill -9 (rotation, disabled); changes and
// deletions while attempts are on the wire; TLS verification; fan-out to many endpoints.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import WebSocket from 'ws';
import { startServer, test } from './lib/server.mjs';
import { get, request, sleep, waitFor } from './lib/http.mjs';
import { startReceiver, heraldApi, respond, assertVerified, verifyError, waitDeliveries } from './lib/receiver.mjs';

const args = (schedule = '200ms,400ms,800ms', extra = []) => ({ args: ['--webhook-allow-private', '--webhook-retry-schedule', schedule, ...extra] });

test('every way in feeds the outbox: single, batch, WebSocket op and raw, webhooks in; an idempotent repeat does not', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, args());
  const api = heraldApi(srv);
  const ep = await api.createOk({ url: recv.url('/in'), topics: ['in/**'] });
  const ids = [];

  // Single publish, with an Idempotency-Key repeated.
  const first = await api.call('POST', '/v1/topics/in/a/events', JSON.stringify({ k: 1 }), { 'Idempotency-Key': 'same-key' });
  assert.equal(first.status, 201, first.text);
  const again = await api.call('POST', '/v1/topics/in/a/events', JSON.stringify({ k: 1 }), { 'Idempotency-Key': 'same-key' });
  assert.equal(again.status, 200, again.text);
  assert.equal(again.json.id, first.json.id);
  ids.push(first.json.id);

  // Batch.
  ids.push(...(await api.batch([{ topic: 'in/b', data: 1 }, { topic: 'not-in', data: 2 }, { topic: 'in/c/d', data: 3 }])));
  ids.splice(ids.length - 2, 1); // the not-in one

  // WebSocket: multiplexed publish op, and raw mode.
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/v1/ws`, ['herald.v1']);
  await new Promise((res, rej) => ws.once('open', res).once('error', rej));
  const ack = new Promise((res) => ws.on('message', (m) => {
    const j = JSON.parse(m.toString());
    if (j.op === 'ack') res(j);
  }));
  ws.send(JSON.stringify({ op: 'publish', topic: 'in/ws', type: 'chat', data: { hi: true }, ref: '1' }));
  ids.push((await ack).id);
  ws.close();
  const raw = new WebSocket(`ws://127.0.0.1:${srv.port}/v1/topics/in/raw/ws`);
  await new Promise((res, rej) => raw.once('open', res).once('error', rej));
  raw.send('hello raw');
  const rawEvent = await waitFor(async () => (await api.events('in/raw')).find((e) => e.data === 'hello raw'), { message: 'the raw WS publish stored' });
  ids.push(rawEvent.id);
  raw.close();

  // Webhooks in (a Standard Webhooks source) → webhooks out.
  const srcSecret = 'whsec_' + Buffer.alloc(24, 7).toString('base64');
  const src = await api.call('POST', '/v1/sources', { name: 'std', scheme: 'standard', secret: srcSecret, topic: 'in/hooked' });
  assert.equal(src.status, 201, src.text);
  const body = JSON.stringify({ type: 'invoice.paid', n: 1 });
  const msgId = 'msg_edge_1';
  const ts = new Date();
  const hook = await request(`${srv.url}/v1/hooks/std`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'webhook-id': msgId,
      'webhook-timestamp': String(Math.floor(ts / 1000)),
      'webhook-signature': new Webhook(srcSecret).sign(msgId, ts, body),
    },
    body,
  });
  assert.equal(hook.status, 200, hook.text);
  ids.push(hook.json.id);

  const got = await recv.waitEvents(ids, { path: '/in', timeout: 5000 });
  for (const r of got.values()) assertVerified(r, ep.secret);
  assert.equal(got.get(hook.json.id).json.topic, 'in/hooked');
  assert.deepEqual(got.get(hook.json.id).json.data, { type: 'invoice.paid', n: 1 });
  await sleep(400);
  assert.equal(recv.requests.length, ids.length, `one delivery per stored event, none for the idempotent repeat (${recv.requests.map((r) => r.json?.id)})`);
  assert.equal((await api.deliveriesOk(ep.id)).length, ids.length);
});

test('jitter: retries spread ±20 % around the schedule step, in both directions', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, args('1s'));
  const api = heraldApi(srv);
  recv.route('/j', respond.failThen(1));
  await api.createOk({ url: recv.url('/j'), topics: ['j'] });
  const ids = await api.batch(Array.from({ length: 40 }, (_, i) => ({ topic: 'j', data: i })));
  await recv.waitRequests(80, { path: '/j', timeout: 6000 });
  const gaps = ids.map((id) => {
    const [a, b] = recv.matching({ eventId: id });
    return b.t - a.t;
  });
  const s = [...gaps].sort((x, y) => x - y);
  t.diagnostic(`40 gaps for a 1 s step: min ${s[0].toFixed(0)} p50 ${s[20].toFixed(0)} max ${s[39].toFixed(0)} ms`);
  assert.ok(s[0] >= 790, `no retry sooner than step −20 % (min ${s[0].toFixed(0)} ms)`);
  assert.ok(s[39] <= 1200 + 500, `no retry much later than step +20 % (max ${s[39].toFixed(0)} ms)`);
  assert.ok(s.some((g) => g < 960), 'some retries come early (negative jitter)');
  assert.ok(s.some((g) => g > 1040), 'some retries come late (positive jitter)');
});

test('Retry-After is capped at 1 h', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, args('100ms,100ms'));
  const api = heraldApi(srv);
  recv.route('/cap', respond.retryAfter(503, '86400'));
  const ep = await api.createOk({ url: recv.url('/cap'), topics: ['cap'] });
  await api.publish('cap', 1);
  await recv.waitRequests(1);
  const [d] = await waitDeliveries(api, ep.id, (ds) => ds[0]?.attempts.length === 1 && ds[0].next_attempt, { what: 'one failed attempt' });
  const wait = (Date.parse(d.next_attempt) - Date.now()) / 1000;
  assert.ok(wait > 3500 && wait <= 3601, `next attempt in ${wait.toFixed(0)} s: Retry-After 86400 capped at 3600`);
  assert.equal(d.status, 'failed');
});

test('state survives kill -9: rotation (both signatures), disabled endpoint, dead delivery', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, args('100ms'));
  const api = heraldApi(srv);
  const rot = await api.createOk({ url: recv.url('/rot'), topics: ['p'] });
  const off = await api.createOk({ url: recv.url('/off'), topics: ['p'] });
  recv.route('/dead', respond.ok(500));
  const dead = await api.createOk({ url: recv.url('/dead'), topics: ['d'] });
  const newSecret = (await api.rotate(rot.id)).json.secret;
  await api.patchOk(off.id, { enabled: false });
  await api.publish('d', 'x');
  await waitDeliveries(api, dead.id, (ds) => ds[0]?.status === 'dead', { what: 'dead' });
  await srv.kill9();
  await srv.restart();

  assert.equal((await api.getOk(off.id)).enabled, false, 'disabled survives');
  const e = await api.publish('p', 'after restart');
  const [r] = await recv.waitRequests(1, { path: '/rot', eventId: e.id, timeout: 3000 });
  assert.equal(r.signatures.length, 2, `still two signatures after the restart: ${r.headers['webhook-signature']}`);
  assertVerified(r, rot.secret, 'old secret');
  assertVerified(r, newSecret, 'new secret');
  await sleep(500);
  assert.equal(recv.matching({ path: '/off' }).length, 0);
  assert.equal(recv.matching({ path: '/dead' }).length, 2, 'a dead delivery is not retried after a restart');
  assert.equal((await api.deliveriesOk(dead.id, 'dead')).length, 1);
});

test('PATCH url while a delivery is retrying: the next attempt goes to the new URL', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, args(Array(10).fill('300ms').join(',')));
  const api = heraldApi(srv);
  recv.route('/old', respond.ok(500));
  const ep = await api.createOk({ url: recv.url('/old'), topics: ['mv'] });
  const e = await api.publish('mv', 1);
  await recv.waitRequests(1, { path: '/old' });
  await api.patchOk(ep.id, { url: recv.url('/new') });
  const [r] = await recv.waitRequests(1, { path: '/new', timeout: 3000 });
  assert.equal(r.webhookId, `evt_${e.epoch}_${e.id}`);
  assertVerified(r, ep.secret);
  await waitDeliveries(api, ep.id, (ds) => ds[0]?.status === 'succeeded', { what: 'succeeded at the new URL' });
});

test('delete, disable and 410 while attempts are on the wire: no crash, nothing retried', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, args(Array(10).fill('200ms').join(','), ['--webhook-endpoint-concurrency', '4']));
  const api = heraldApi(srv);
  recv.route('/del', respond.delay(600, 500));
  recv.route('/dis', respond.delay(600, 500));
  recv.route('/gone', respond.delay(600, 410));
  const del = await api.createOk({ url: recv.url('/del'), topics: ['w'] });
  const dis = await api.createOk({ url: recv.url('/dis'), topics: ['w'] });
  const gone = await api.createOk({ url: recv.url('/gone'), topics: ['w'] });
  await api.batch(Array.from({ length: 6 }, (_, i) => ({ topic: 'w', data: i })));
  for (const p of ['/del', '/dis', '/gone']) await recv.waitRequests(4, { path: p, timeout: 3000 });
  // All three endpoints have 4 attempts in flight, answered in ~600 ms.
  assert.equal((await api.del(del.id)).status, 204);
  await api.patchOk(dis.id, { enabled: false });
  assert.equal((await api.del(gone.id)).status, 204); // deleted before its 410s arrive
  await sleep(1500);
  const counts = Object.fromEntries(['/del', '/dis', '/gone'].map((p) => [p, recv.matching({ path: p }).length]));
  assert.deepEqual(counts, { '/del': 4, '/dis': 4, '/gone': 4 }, 'the in-flight attempts only; nothing after');
  const ds = await waitDeliveries(api, dis.id, (x) => x.length === 6 && x.every((d) => d.status === 'cancelled'), { what: 'all 6 cancelled' });
  assert.equal(ds.length, 6);
  assert.equal((await get(`${srv.url}/readyz`)).status, 200);
  const after = await api.createOk({ url: recv.url('/after'), topics: ['w'] });
  const e = await api.publish('w', 'still working');
  const [r] = await recv.waitRequests(1, { path: '/after' });
  assert.equal(r.json.id, e.id);
  assertVerified(r, after.secret);
});

test('https: the certificate is verified (a self-signed one fails the attempt)', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'herald-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${dir}/k.pem`, '-out', `${dir}/c.pem`, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  } catch {
    t.skip('openssl CLI not available');
    return;
  }
  let hits = 0;
  const server = https.createServer({ key: readFileSync(`${dir}/k.pem`), cert: readFileSync(`${dir}/c.pem`) }, (req, res) => {
    hits += 1;
    res.end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => server.close(r)));
  const srv = await startServer(t, args('100ms,100ms'));
  const api = heraldApi(srv);
  const ep = await api.createOk({ url: `https://127.0.0.1:${server.address().port}/tls`, topics: ['tls'] });
  await api.publish('tls', 1);
  const [d] = await waitDeliveries(api, ep.id, (ds) => ds[0]?.status === 'dead', { what: 'dead', timeout: 5000 });
  for (const a of d.attempts) assert.ok(a.error && !a.status_code, `TLS failure recorded: ${JSON.stringify(a)}`);
  assert.equal(hits, 0, 'no request got through an unverified TLS connection');
});

test('fan-out: 20 endpoints × 50 events, every delivery verifies with its own secret', async (t) => {
  const recv = await startReceiver(t);
  const srv = await startServer(t, args());
  const api = heraldApi(srv);
  const eps = [];
  for (let i = 0; i < 20; i++) eps.push(await api.createOk({ url: recv.url(`/f${i}`), topics: ['fan/**'] }));
  const t0 = Date.now();
  const ids = await api.batch(Array.from({ length: 50 }, (_, i) => ({ topic: `fan/${i % 5}`, data: { i } })));
  for (let i = 0; i < 20; i++) await recv.waitEvents(ids, { path: `/f${i}`, timeout: 10000 });
  t.diagnostic(`1,000 deliveries in ${Date.now() - t0} ms (ASan build)`);
  for (const r of recv.requests) {
    const i = Number(r.path.slice(2));
    assert.equal(verifyError(r, eps[i].secret), null, `request on ${r.path}`);
  }
  assert.equal(recv.requests.length, 1000, 'no duplicates');
});
