// SPEC §7 webhooks out: what a failed attempt leads to — the retry schedule (with its ±20 %
// jitter), dead deliveries, manual retry, replay, cancellation on disable/delete, 410, 429/503
// with Retry-After, redirects, timeouts and the delivery log that records all of it.
import assert from 'node:assert/strict';
import { startServer, test } from './lib/server.mjs';
import { assertError, sleep, waitFor, get } from './lib/http.mjs';
import { startReceiver, heraldApi, respond, assertVerified, waitDeliveries, DELIVERY_STATUSES } from './lib/receiver.mjs';

async function setup(t, schedule = '200ms,400ms,800ms', extra = []) {
  const recv = await startReceiver(t);
  const srv = await startServer(t, { args: ['--webhook-allow-private', '--webhook-retry-schedule', schedule, ...extra] });
  return { srv, recv, api: heraldApi(srv) };
}

function assertDelivery(d) {
  for (const k of ['id', 'webhook_id', 'event_id', 'status', 'next_attempt', 'attempts']) {
    assert.ok(k in d, `delivery has ${k}: ${JSON.stringify(d)}`);
  }
  assert.ok(DELIVERY_STATUSES.includes(d.status), `status ${d.status}`);
  assert.ok(Array.isArray(d.attempts));
  for (const a of d.attempts) {
    for (const k of ['time', 'status_code', 'latency_ms', 'error']) assert.ok(k in a, `attempt has ${k}: ${JSON.stringify(a)}`);
    assert.ok(Number.isFinite(Date.parse(a.time)), `attempt time ${a.time}`);
    assert.ok(typeof a.latency_ms === 'number' && a.latency_ms >= 0, `latency_ms ${a.latency_ms}`);
  }
}

const gapOk = (gap, stepMs, what) => {
  // Jitter ±20 %; the lower bound is the contract, the upper one has room for a slow (ASan) server.
  assert.ok(gap >= stepMs * 0.8 - 10, `${what}: ${gap.toFixed(0)} ms between attempts, schedule step ${stepMs} ms −20 %`);
  assert.ok(gap <= stepMs * 1.2 + 600, `${what}: ${gap.toFixed(0)} ms between attempts, schedule step ${stepMs} ms +20 %`);
};

test('fails twice, then succeeds: same webhook-id, fresh timestamps, schedule honoured, 3 attempts logged', async (t) => {
  const { recv, api } = await setup(t, '300ms,1200ms,5s');
  recv.route('/flaky', respond.failThen(2, 500));
  const ep = await api.createOk({ url: recv.url('/flaky'), topics: ['flaky'] });
  const e = await api.publish('flaky', { n: 1 });

  const [r1, r2] = await recv.waitRequests(2, { timeout: 3000 });
  // While it is still retrying, the delivery is "failed" with a next attempt in the future.
  const failed = await api.deliveriesOk(ep.id, 'failed');
  assert.equal(failed.length, 1, `status=failed lists the retrying delivery: ${JSON.stringify(failed)}`);
  assertDelivery(failed[0]);
  assert.equal(failed[0].event_id, e.id);
  assert.ok(failed[0].next_attempt && Date.parse(failed[0].next_attempt) > Date.now() - 1500, `next_attempt ${failed[0].next_attempt}`);
  assert.deepEqual(await api.deliveriesOk(ep.id, 'succeeded'), []);

  const reqs = await recv.waitRequests(3, { timeout: 4000 });
  const r3 = reqs[2];
  for (const r of reqs) {
    assertVerified(r, ep.secret);
    assert.equal(r.webhookId, `evt_${e.epoch}_${e.id}`, 'the same webhook-id on every attempt');
    assert.ok(Math.abs(r.timestamp - r.at / 1000) <= 2, `webhook-timestamp ${r.timestamp} is the attempt's time (${r.at / 1000})`);
    assert.deepEqual(r.json, reqs[0].json, 'the same body on every attempt');
  }
  assert.ok(r3.timestamp > r1.timestamp, `a fresh timestamp per attempt (${r1.timestamp} → ${r3.timestamp})`);
  gapOk(r2.t - r1.t, 300, '1st retry');
  gapOk(r3.t - r2.t, 1200, '2nd retry');

  const [d] = await waitDeliveries(api, ep.id, (ds) => ds.length === 1 && ds[0].status === 'succeeded', { what: 'succeeded' });
  assertDelivery(d);
  assert.equal(d.webhook_id, ep.id);
  assert.equal(d.event_id, e.id);
  assert.deepEqual(d.attempts.map((a) => a.status_code), [500, 500, 200]);
  assert.ok(d.next_attempt === null || d.next_attempt === undefined, `no next attempt once succeeded: ${d.next_attempt}`);
  const times = d.attempts.map((a) => Date.parse(a.time));
  assert.ok(times[0] <= times[1] && times[1] <= times[2], `attempts oldest first: ${JSON.stringify(d.attempts)}`);
  assert.deepEqual((await api.deliveriesOk(ep.id, 'succeeded')).map((x) => x.id), [d.id]);
  assert.deepEqual(await api.deliveriesOk(ep.id, 'failed'), []);
  await sleep(300);
  assert.equal(recv.requests.length, 3, 'no attempt after the success');
});

test('schedule exhausted → dead, no more attempts; manual retry → 202 delivers it', async (t) => {
  const { recv, api } = await setup(t, '200ms,400ms');
  recv.route('/down', respond.ok(500));
  const ep = await api.createOk({ url: recv.url('/down'), topics: ['dead'] });
  const e = await api.publish('dead', 'x');

  await recv.waitRequests(3, { timeout: 3000 });
  const [d] = await waitDeliveries(api, ep.id, (ds) => ds.length === 1 && ds[0].status === 'dead', { what: 'dead' });
  assertDelivery(d);
  assert.deepEqual(d.attempts.map((a) => a.status_code), [500, 500, 500]);
  assert.ok(d.next_attempt === null || d.next_attempt === undefined, `dead: no next attempt (${d.next_attempt})`);
  await sleep(1000);
  assert.equal(recv.requests.length, 3, '1 attempt + 2 retries, then nothing');

  for (const [status, want] of [['dead', [d.id]], ['pending', []], ['failed', []], ['succeeded', []], ['cancelled', []]]) {
    assert.deepEqual((await api.deliveriesOk(ep.id, status)).map((x) => x.id), want, `?status=${status}`);
  }
  assertError(await api.deliveries(ep.id, 'bogus'), 400, 'invalid_parameter');

  recv.route('/down', respond.ok(200));
  const res = await api.retry(ep.id, d.id);
  assert.equal(res.status, 202, res.text);
  const reqs = await recv.waitRequests(4, { timeout: 3000 });
  assertVerified(reqs[3], ep.secret);
  assert.equal(reqs[3].webhookId, `evt_${e.epoch}_${e.id}`);
  assert.ok(Math.abs(reqs[3].timestamp - reqs[3].at / 1000) <= 2);
  const [d2] = await waitDeliveries(api, ep.id, (ds) => ds[0]?.status === 'succeeded', { what: 'succeeded after retry' });
  assert.equal(d2.id, d.id);
  assert.deepEqual(d2.attempts.map((a) => a.status_code), [500, 500, 500, 200]);
  assertError(await api.retry(ep.id, 'no-such-delivery'), 404, 'not_found');
});

test('replay {"since":"0"} → 202 {"queued":N}: every matching event delivered again', async (t) => {
  const { recv, api } = await setup(t);
  const ep = await api.createOk({ url: recv.url('/r'), topics: ['r/**'], types: ['t'] });
  const ids = [];
  ids.push((await api.publish('r/a', 1, { type: 't' })).id);
  await api.publish('other', 2, { type: 't' }); // topic does not match
  ids.push((await api.publish('r/b', 3, { type: 't' })).id);
  await api.publish('r/a', 4, { type: 'u' }); // type does not match
  ids.push(...(await api.batch([{ topic: 'r/c/d', type: 't', data: 5 }])));
  await recv.waitEvents(ids, { timeout: 3000 });
  await waitDeliveries(api, ep.id, (ds) => ds.length === 3 && ds.every((d) => d.status === 'succeeded'), { what: '3 succeeded' });
  const firstIds = recv.requests.map((r) => r.webhookId).sort();
  assert.equal(recv.requests.length, 3);

  const res = await api.replay(ep.id, '0');
  assert.equal(res.status, 202, res.text);
  assert.deepEqual(res.json, { queued: 3 });
  const all = await recv.waitRequests(6, { timeout: 3000 });
  const again = all.slice(3);
  assert.deepEqual(again.map((r) => r.webhookId).sort(), firstIds, 'the same webhook-ids (receivers deduplicate by them)');
  for (const r of again) assertVerified(r, ep.secret);

  const res2 = await api.replay(ep.id, ids[1]);
  assert.equal(res2.status, 202, res2.text);
  assert.deepEqual(res2.json, { queued: 1 }, 'since is exclusive: only events after it');
  const more = await recv.waitRequests(7, { timeout: 3000 });
  assert.equal(more[6].json.id, ids[2]);

  const none = await api.replay(ep.id, '999999');
  assert.equal(none.status, 202, none.text);
  assert.deepEqual(none.json, { queued: 0 });
  for (const bad of ['abc', '-1', '1.5', '']) {
    const r = await api.replay(ep.id, bad);
    assert.equal(r.status, 400, `since ${JSON.stringify(bad)}: ${r.status} ${r.text}`);
  }
  await sleep(300);
  assert.equal(recv.requests.length, 7);
});

test('disabled endpoint: pending deliveries cancelled, new events not delivered', async (t) => {
  const { srv, recv, api } = await setup(t, Array(12).fill('300ms').join(','));
  recv.route('/off', respond.ok(500));
  const ep = await api.createOk({ url: recv.url('/off'), topics: ['off'] });
  const e1 = await api.publish('off', 1);
  const e2 = await api.publish('off', 2);
  await waitDeliveries(api, ep.id, (ds) => ds.length === 2, { status: 'failed', what: '2 failed and retrying' });

  const p = await api.patchOk(ep.id, { enabled: false });
  assert.equal(p.enabled, false);
  await sleep(200); // an attempt already on the wire may still land
  const seen = recv.requests.length;
  const ds = await waitDeliveries(api, ep.id, (x) => x.length === 2 && x.every((d) => d.status === 'cancelled'), { what: 'both cancelled' });
  assert.deepEqual(ds.map((d) => d.event_id).sort(), [e1.id, e2.id].sort());
  assert.deepEqual((await api.deliveriesOk(ep.id, 'cancelled')).length, 2);
  assert.deepEqual(await api.deliveriesOk(ep.id, 'failed'), []);

  const e3 = await api.publish('off', 3);
  await sleep(1000);
  assert.equal(recv.requests.length, seen, 'nothing is sent to a disabled endpoint');
  for (const d of await api.deliveriesOk(ep.id)) {
    if (d.event_id === e3.id) assert.equal(d.status, 'cancelled', 'an event for a disabled endpoint is not pending');
  }

  // Enabled again: new events are delivered; cancelled ones stay cancelled (replay exists for that).
  recv.route('/off', respond.ok(200));
  await api.patchOk(ep.id, { enabled: true });
  const e4 = await api.publish('off', 4);
  await recv.waitEvents([e4.id], { timeout: 3000 });
  await sleep(500);
  assert.deepEqual(
    recv.requests.slice(seen).map((r) => r.json.id),
    [e4.id],
    'only the new event is delivered after re-enabling',
  );
  assert.equal((await get(`${srv.url}/readyz`)).status, 200);
});

test('deleted endpoint: queued deliveries cancelled, no attempts, the worker keeps serving others', async (t) => {
  const { srv, recv, api } = await setup(t, Array(12).fill('300ms').join(','));
  recv.route('/del', respond.ok(500));
  const doomed = await api.createOk({ url: recv.url('/del'), topics: ['del/**'] });
  const other = await api.createOk({ url: recv.url('/other'), topics: ['del/**'] });
  const ids = await api.batch(Array.from({ length: 10 }, (_, i) => ({ topic: `del/${i}`, data: i })));
  await waitDeliveries(api, doomed.id, (ds) => ds.length === 10 && ds.every((d) => d.attempts.length >= 1), { what: '10 attempted' });
  await recv.waitEvents(ids, { path: '/other', timeout: 3000 });

  const res = await api.del(doomed.id);
  assert.equal(res.status, 204, res.text);
  await sleep(200);
  const seen = recv.matching({ path: '/del' }).length;
  assertError(await api.deliveries(doomed.id), 404, 'not_found');

  const more = await api.batch(Array.from({ length: 5 }, (_, i) => ({ topic: `del/x${i}`, data: i })));
  await recv.waitEvents(more, { path: '/other', timeout: 3000 });
  await sleep(1000);
  assert.equal(recv.matching({ path: '/del' }).length, seen, 'no attempt for a deleted endpoint');
  assert.equal((await get(`${srv.url}/readyz`)).status, 200);
  assert.equal((await api.deliveriesOk(other.id)).length, 15);
});

test('410 Gone disables the endpoint; its deliveries stop', async (t) => {
  const { recv, api } = await setup(t);
  recv.route('/gone', respond.ok(410));
  const gone = await api.createOk({ url: recv.url('/gone'), topics: ['g'] });
  const ok = await api.createOk({ url: recv.url('/ok'), topics: ['g'] });
  const e1 = await api.publish('g', 1);
  await recv.waitRequests(1, { path: '/gone' });
  await waitFor(async () => (await api.getOk(gone.id)).enabled === false, { timeout: 3000, message: 'enabled:false after 410' });
  const [d] = await waitDeliveries(api, gone.id, (ds) => ds.length === 1 && ['dead', 'cancelled'].includes(ds[0].status), { what: 'the 410 delivery settled' });
  assert.equal(d.event_id, e1.id);
  assert.deepEqual(d.attempts.map((a) => a.status_code), [410]);

  const e2 = await api.publish('g', 2);
  await recv.waitEvents([e1.id, e2.id], { path: '/ok' });
  await sleep(1000);
  assert.equal(recv.matching({ path: '/gone' }).length, 1, 'no retry after 410, nothing new');
  assert.equal((await api.getOk(ok.id)).enabled, true, 'other endpoints unaffected');
});

test('429/503 with Retry-After: the next attempt waits at least that long', async (t) => {
  const { recv, api } = await setup(t, '100ms,100ms,100ms');
  recv.route('/429', respond.retryAfter(429, '1'));
  recv.route('/503', respond.retryAfter(503, '1'));
  recv.route('/date', (rec, ctx) => (ctx.attempt === 1 ? { status: 503, headers: { 'Retry-After': new Date(Date.now() + 2000).toUTCString() } } : { status: 200 }));
  recv.route('/plain', respond.failThen(1, 429)); // no Retry-After: the schedule applies
  const eps = {};
  for (const p of ['/429', '/503', '/date', '/plain']) eps[p] = await api.createOk({ url: recv.url(p), topics: ['ra'] });
  const e = await api.publish('ra', 'x');
  const gaps = {};
  await Promise.all(
    Object.keys(eps).map(async (p) => {
      const [a, b] = await recv.waitRequests(2, { path: p, timeout: 5000 });
      assert.equal(a.webhookId, b.webhookId);
      assertVerified(b, eps[p].secret);
      gaps[p] = b.at - a.at;
    }),
  );
  t.diagnostic(`gaps between attempts (ms): ${JSON.stringify(gaps)}`);
  assert.ok(gaps['/429'] >= 990, `429 Retry-After: 1 → ${gaps['/429']} ms`);
  assert.ok(gaps['/503'] >= 990, `503 Retry-After: 1 → ${gaps['/503']} ms`);
  assert.ok(gaps['/date'] >= 990, `503 Retry-After: <HTTP-date ≥ 1 s ahead> → ${gaps['/date']} ms`);
  assert.ok(gaps['/plain'] < 800, `429 without Retry-After follows the 100 ms schedule → ${gaps['/plain']} ms`);
  for (const p of Object.keys(eps)) {
    const [d] = await waitDeliveries(api, eps[p].id, (ds) => ds[0]?.status === 'succeeded', { what: `${p} succeeded` });
    assert.equal(d.event_id, e.id);
    assert.equal(d.attempts.length, 2);
  }
});

test('responses: 2xx succeed; a redirect is a failure (not followed); 4xx/5xx retried', async (t) => {
  const { recv, api } = await setup(t, '100ms,100ms');
  recv.route('/r302', respond.redirect(recv.url('/target')));
  recv.route('/r307', respond.redirect(recv.url('/target'), 307));
  recv.route('/s204', respond.ok(204));
  recv.route('/s201', respond.ok(201));
  recv.route('/s299', respond.ok(299));
  recv.route('/s400', respond.ok(400));
  recv.route('/s404', respond.ok(404));
  recv.route('/s500', respond.ok(500));
  recv.route('/s100', respond.destroy()); // no answer at all
  const paths = ['/r302', '/r307', '/s204', '/s201', '/s299', '/s400', '/s404', '/s500', '/s100'];
  const eps = {};
  for (const p of paths) eps[p] = await api.createOk({ url: recv.url(p), topics: ['resp'] });
  await api.publish('resp', { x: 1 });
  const failing = ['/r302', '/r307', '/s400', '/s404', '/s500', '/s100'];
  for (const p of paths) {
    const want = failing.includes(p) ? 'dead' : 'succeeded';
    const [d] = await waitDeliveries(api, eps[p].id, (ds) => ds[0]?.status === want, { what: `${p} ${want}`, timeout: 4000 });
    const code = p === '/s100' ? null : Number(p.slice(2));
    if (want === 'dead') {
      assert.equal(d.attempts.length, 3, `${p}: 1 attempt + 2 retries`);
      if (code !== null) assert.deepEqual(d.attempts.map((a) => a.status_code), [code, code, code], p);
      else for (const a of d.attempts) assert.ok(a.error, `${p}: attempt without answer has an error: ${JSON.stringify(a)}`);
    } else {
      assert.deepEqual(d.attempts.map((a) => a.status_code), [code], p);
    }
  }
  await sleep(300);
  assert.equal(recv.matching({ path: '/target' }).length, 0, 'redirects are never followed');
});

test('--webhook-timeout: an attempt that does not answer in time fails and is retried', async (t) => {
  const { recv, api } = await setup(t, '100ms,100ms', ['--webhook-timeout', '500ms']);
  recv.route('/slow', respond.sequence(respond.hang(), respond.ok()));
  recv.route('/late', respond.sequence({ status: 200, delay: 1500 }, respond.ok()));
  const slow = await api.createOk({ url: recv.url('/slow'), topics: ['to'] });
  const late = await api.createOk({ url: recv.url('/late'), topics: ['to'] });
  await api.publish('to', 'x');
  for (const [p, ep] of [['/slow', slow], ['/late', late]]) {
    const [a, b] = await recv.waitRequests(2, { path: p, timeout: 4000 });
    assert.ok(b.t - a.t >= 500 + 80 - 10, `${p}: retry after the 500 ms timeout + schedule (${(b.t - a.t).toFixed(0)} ms)`);
    assert.equal(a.webhookId, b.webhookId);
    const [d] = await waitDeliveries(api, ep.id, (ds) => ds[0]?.status === 'succeeded', { what: `${p} succeeded` });
    assert.equal(d.attempts.length, 2);
    const first = d.attempts[0];
    assert.notEqual(first.status_code, 200, `${p}: a late 200 is not a success: ${JSON.stringify(first)}`);
    assert.ok(first.error, `${p}: the timeout is recorded: ${JSON.stringify(first)}`);
    assert.ok(first.latency_ms >= 450 && first.latency_ms < 3000, `${p}: latency ${first.latency_ms} ≈ the timeout`);
    assert.equal(d.attempts[1].status_code, 200);
  }
});
