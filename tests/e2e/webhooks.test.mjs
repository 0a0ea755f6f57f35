// SPEC §7 webhooks out: the endpoint management API, the SSRF policy at registration, the
// request herald sends (Standard Webhooks headers and signature, checked with the npm
// standardwebhooks package), topic/type filters, secret rotation and the API key (§9).
// Retries are in webhooks_retry.test.mjs; isolation, caps and crash safety in
// webhooks_resilience.test.mjs.
import assert from 'node:assert/strict';
import { startServer, test } from './lib/server.mjs';
import { assertError, request, sleep, TIME_RE } from './lib/http.mjs';
import {
  startReceiver,
  heraldApi,
  assertVerified,
  expectedSignature,
  verifyError,
  waitDeliveries,
  WEBHOOK_ID_RE,
  SECRET_RE,
} from './lib/receiver.mjs';

const FAST = ['--webhook-allow-private', '--webhook-retry-schedule', '200ms,400ms,800ms'];
// The example secret of the Standard Webhooks specification (24 bytes).
const GIVEN_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

function assertEndpoint(ep, want = {}) {
  const keys = Object.keys(ep);
  for (const k of ['id', 'url', 'topics', 'enabled', 'created']) assert.ok(keys.includes(k), `endpoint has ${k}: ${JSON.stringify(ep)}`);
  for (const k of keys) {
    assert.ok(['id', 'url', 'topics', 'types', 'description', 'enabled', 'created', 'secret'].includes(k), `unexpected endpoint field ${k}: ${JSON.stringify(ep)}`);
  }
  assert.match(ep.id, WEBHOOK_ID_RE);
  assert.equal(typeof ep.enabled, 'boolean');
  assert.equal(typeof ep.created, 'string');
  assert.ok(Number.isFinite(Date.parse(ep.created)), `created is a date: ${ep.created}`);
  for (const [k, v] of Object.entries(want)) assert.deepEqual(ep[k], v, `endpoint ${k}: ${JSON.stringify(ep)}`);
}

/** A 400 whose JSON is {"error","message"} (a "position" is tolerated for invalid JSON). */
function assert400(res, code, context) {
  const opts = { context };
  if (res.json && res.json.position !== undefined) opts.position = res.json.position;
  assertError(res, 400, code, opts);
}

test('endpoint API: create, list, get, patch, delete; 404 for unknown ids', async (t) => {
  const srv = await startServer(t, { args: FAST });
  const api = heraldApi(srv);
  const before = Date.now();

  // Generated secret: whsec_ + base64 of 24 random bytes.
  const res = await api.create({ url: 'http://127.0.0.1:9/a', topics: ['orders/**'], types: ['status'], description: 'orders' });
  assert.equal(res.status, 201, res.text);
  assert.match(res.headers['content-type'] || '', /^application\/json/);
  const a = res.json;
  assertEndpoint(a, { url: 'http://127.0.0.1:9/a', topics: ['orders/**'], types: ['status'], description: 'orders', enabled: true });
  assert.match(a.secret, SECRET_RE, `generated secret ${a.secret}`);
  assert.equal(Buffer.from(a.secret.slice(6), 'base64').length, 24);
  assert.ok(Math.abs(Date.parse(a.created) - before) < 60000, `created ${a.created} is about now`);

  // A given secret is kept as given; types absent means all types.
  const b = await api.createOk({ url: 'http://127.0.0.1:9/b', topics: ['**'], secret: GIVEN_SECRET });
  assertEndpoint(b, { url: 'http://127.0.0.1:9/b', topics: ['**'], enabled: true, secret: GIVEN_SECRET });
  assert.ok(b.types === undefined || b.types === null, `types absent → all (got ${JSON.stringify(b.types)})`);
  assert.notEqual(a.id, b.id);
  const c = await api.createOk({ url: 'http://127.0.0.1:9/c', topics: ['x'] });
  assert.notEqual(c.secret, a.secret, 'every generated secret is new');

  // List.
  const list = await api.list();
  assert.equal(list.status, 200, list.text);
  assert.deepEqual(Object.keys(list.json), ['webhooks']);
  assert.deepEqual(list.json.webhooks.map((w) => w.id).sort(), [a.id, b.id, c.id].sort());
  for (const w of list.json.webhooks) assertEndpoint(w);

  // Get.
  const got = await api.getOk(a.id);
  const { secret: _s, ...aPublic } = a;
  assertEndpoint(got, aPublic);

  // Patch each field; the answer and a later GET show it.
  const patches = [
    { url: 'http://127.0.0.1:9/a2' },
    { topics: ['orders/*', 'users/**'] },
    { types: ['created', 'status'] },
    { description: 'changed' },
    { enabled: false },
    { enabled: true, description: 'both' },
  ];
  let expect = { ...aPublic };
  for (const p of patches) {
    expect = { ...expect, ...p };
    const r = await api.patchOk(a.id, p);
    assertEndpoint(r, expect);
    assertEndpoint(await api.getOk(a.id), expect);
  }
  assert.equal((await api.getOk(a.id)).created, a.created, 'created does not change');

  // Bad patches leave the endpoint as it was.
  assert400(await api.patch(a.id, { url: 'ftp://127.0.0.1/' }), 'invalid_url', 'PATCH url ftp');
  assert400(await api.patch(a.id, { topics: [] }), ['invalid_parameter', 'invalid_topic'], 'PATCH topics []');
  assert400(await api.patch(a.id, { topics: ['a//b'] }), 'invalid_topic', 'PATCH topics a//b');
  assert400(await api.patch(a.id, { types: ['bad type'] }), 'invalid_type', 'PATCH types');
  assert400(await api.patch(a.id, { enabled: 'yes' }), 'invalid_parameter', 'PATCH enabled "yes"');
  assert400(await api.patch(a.id, '{"enabled":'), 'invalid_json', 'PATCH invalid JSON');
  assertEndpoint(await api.getOk(a.id), expect);

  // Delete.
  const d = await api.del(a.id);
  assert.equal(d.status, 204, d.text);
  assert.equal(d.body.length, 0);
  assertError(await api.get(a.id), 404, 'not_found');
  assertError(await api.del(a.id), 404, 'not_found');
  assert.deepEqual((await api.list()).json.webhooks.map((w) => w.id).sort(), [b.id, c.id].sort());

  // Unknown ids, on every route.
  for (const id of [a.id, 'wh_doesnotexist', 'nope']) {
    assertError(await api.get(id), 404, 'not_found', { context: `GET ${id}` });
    assertError(await api.patch(id, { description: 'x' }), 404, 'not_found', { context: `PATCH ${id}` });
    assertError(await api.del(id), 404, 'not_found', { context: `DELETE ${id}` });
    assertError(await api.rotate(id), 404, 'not_found', { context: `rotate ${id}` });
    assertError(await api.deliveries(id), 404, 'not_found', { context: `deliveries ${id}` });
    assertError(await api.replay(id, '0'), 404, 'not_found', { context: `replay ${id}` });
    assertError(await api.retry(id, '1'), 404, 'not_found', { context: `retry ${id}` });
  }
  assertError(await api.retry(b.id, '999999'), 404, 'not_found', { context: 'retry of an unknown delivery' });

  // Method not allowed carries Allow.
  const put = await api.call('PUT', '/v1/webhooks', {});
  assertError(put, 405, 'method_not_allowed');
  assert.ok(put.headers.allow, 'Allow header on 405');
});

test('endpoint API: invalid bodies → 400', async (t) => {
  const srv = await startServer(t, { args: FAST });
  const api = heraldApi(srv);
  const url = 'http://127.0.0.1:9/';
  assert400(await api.create('{"url":'), 'invalid_json', 'truncated JSON');
  assert400(await api.create('not json'), 'invalid_json', 'not JSON');
  assert400(await api.create('[1,2]'), ['invalid_json', 'invalid_parameter'], 'an array');
  assert400(await api.create({ topics: ['a'] }), ['invalid_url', 'invalid_parameter'], 'no url');
  assert400(await api.create({ url: 42, topics: ['a'] }), ['invalid_url', 'invalid_parameter'], 'url 42');
  assert400(await api.create({ url }), ['invalid_parameter', 'invalid_topic'], 'no topics');
  assert400(await api.create({ url, topics: [] }), ['invalid_parameter', 'invalid_topic'], 'topics []');
  assert400(await api.create({ url, topics: 'a' }), ['invalid_parameter', 'invalid_topic'], 'topics "a"');
  assert400(await api.create({ url, topics: ['/a'] }), 'invalid_topic', 'topic /a');
  assert400(await api.create({ url, topics: ['a/**/b'] }), 'invalid_topic', '** not final');
  assert400(await api.create({ url, topics: ['a'], types: ['sp ace'] }), 'invalid_type', 'type with a space');
  assert400(await api.create({ url, topics: ['a'], secret: 'whsec_' }), 'invalid_parameter', 'empty secret');
  assert400(await api.create({ url, topics: ['a'], secret: 'whsec_!!!notbase64' }), 'invalid_parameter', 'secret not base64');
  assert400(await api.create({ url, topics: ['a'], enabled: 'no' }), 'invalid_parameter', 'enabled "no"');
  assert.deepEqual((await api.list()).json, { webhooks: [] }, 'nothing was created');
});

const REFUSED_ALWAYS = [
  'ftp://example.com/hook',
  'file:///etc/passwd',
  'javascript:alert(1)',
  'gopher://127.0.0.1:6379/_INFO',
  'http://',
  'not a url',
  'http://user:pw@example.com/',
  'http://exa mple.com/',
  'http://example.com:99999/',
  'http://example.com/a\r\nX-Injected: 1',
  'http://example.com\\@127.0.0.1/',
  `https://example.com/${'a'.repeat(2100)}`,
];
const REFUSED_PRIVATE = [
  'http://127.0.0.1/',
  'http://[::1]/',
  'http://0x7f.1/',
  'http://0177.0.0.1/',
  'http://localhost/',
  'http://10.0.0.1/',
  'http://127.1/',
  'http://2130706433/',
  'http://LOCALHOST./',
  'http://foo.localhost/',
  'http://[::ffff:127.0.0.1]/',
  'http://[::ffff:7f00:1]/',
  'http://169.254.169.254/latest/meta-data/',
  'http://[fe80::1]/',
  'http://192.168.1.1/',
  'http://172.16.0.1/',
  'http://100.64.0.1/',
  'http://0.0.0.0/',
  'https://127.0.0.1:8443/x',
  'HTTP://127.0.0.1/',
];

test('SSRF policy at registration: refused URLs → 400 invalid_url without --webhook-allow-private', async (t) => {
  const srv = await startServer(t, { args: ['--webhook-retry-schedule', '200ms'] });
  const api = heraldApi(srv);
  for (const url of [...REFUSED_ALWAYS, ...REFUSED_PRIVATE]) {
    assertError(await api.create({ url, topics: ['a'] }), 400, 'invalid_url', { context: url });
  }
  // A public name or address is accepted (nothing is connected at registration).
  const ok = await api.createOk({ url: 'https://example.com/hook?x=1', topics: ['a'] });
  await api.createOk({ url: 'http://93.184.215.14:8080/', topics: ['a'] });
  // PATCH is checked the same way.
  for (const url of ['http://127.0.0.1/', 'http://[::1]/', 'ftp://example.com/']) {
    assertError(await api.patch(ok.id, { url }), 400, 'invalid_url', { context: `PATCH ${url}` });
  }
  assert.equal((await api.getOk(ok.id)).url, 'https://example.com/hook?x=1');
  assert.equal((await api.list()).json.webhooks.length, 2);
});

test('SSRF policy with --webhook-allow-private: private addresses accepted, other schemes still refused', async (t) => {
  const srv = await startServer(t, { args: FAST });
  const api = heraldApi(srv);
  for (const url of REFUSED_ALWAYS) {
    assertError(await api.create({ url, topics: ['a'] }), 400, 'invalid_url', { context: url });
  }
  for (const url of ['http://127.0.0.1/', 'http://[::1]/', 'http://localhost:1234/x', 'http://10.0.0.1/']) {
    await api.createOk({ url, topics: ['a'] });
  }
});

test('delivery: standardwebhooks verifies it; headers and body exactly per SPEC', async (t) => {
  const srv = await startServer(t, { args: FAST });
  const recv = await startReceiver(t);
  const api = heraldApi(srv);
  const ep = await api.createOk({ url: recv.url('/hook?key=abc&x=%20y'), topics: ['fmt/**'] });

  const sent = [
    { topic: 'fmt/json', data: { n: 1, s: 'héllo ✓', nested: [1, { a: null }] }, type: 'created' },
    { topic: 'fmt/text', data: 'plain text, "quoted"\nsecond line' },
    { topic: 'fmt/big', data: { blob: 'x'.repeat(200000) }, type: 'big' },
    { topic: 'fmt/num', data: 12.5 },
  ];
  const receipts = [];
  for (const s of sent) {
    const q = s.type ? `?type=${s.type}` : '';
    const isText = typeof s.data === 'string';
    const res = await request(`${srv.url}/v1/topics/${s.topic}/events${q}`, {
      method: 'POST',
      headers: { 'Content-Type': isText ? 'text/plain; charset=utf-8' : 'application/json' },
      body: isText ? s.data : JSON.stringify(s.data),
    });
    assert.equal(res.status, 201, res.text);
    receipts.push({ ...res.json, epoch: res.headers['herald-epoch'] });
  }
  const byId = await recv.waitEvents(receipts.map((r) => r.id), { path: '/hook', timeout: 5000 });
  const stored = new Map();
  for (const s of sent) for (const ev of await api.events(s.topic)) stored.set(ev.id, ev);

  for (const receipt of receipts) {
    const rec = byId.get(receipt.id);
    assertVerified(rec, ep.secret, `event ${receipt.id}`);
    assert.equal(rec.method, 'POST');
    assert.equal(rec.url, '/hook?key=abc&x=%20y', 'path and query are sent as registered');
    assert.equal(rec.headers['content-type'], 'application/json');
    assert.equal(rec.webhookId, `evt_${receipt.epoch}_${receipt.id}`, 'webhook-id is evt_<epoch>_<id>');
    assert.match(rec.headers['webhook-timestamp'], /^[1-9][0-9]{9}$/, 'webhook-timestamp: unix seconds');
    assert.ok(Math.abs(rec.timestamp - rec.at / 1000) <= 3, `webhook-timestamp ${rec.timestamp} is now (${rec.at / 1000})`);
    assert.equal(rec.signatures.length, 1, `one signature: ${rec.headers['webhook-signature']}`);
    assert.match(rec.signatures[0], /^v1,[A-Za-z0-9+/]{43}=$/);
    assert.equal(rec.signatures[0], expectedSignature(rec, ep.secret));
    assert.equal(Number(rec.headers['content-length']), rec.body.length, 'Content-Length matches the body');
    // Body: the event JSON, exactly its five fields, equal to what polling returns.
    assert.deepEqual(Object.keys(rec.json).sort(), ['data', 'id', 'time', 'topic', 'type']);
    assert.deepEqual(rec.json, stored.get(receipt.id));
    assert.match(rec.json.time, TIME_RE);
    assert.equal(rec.json.time, receipt.time);
    // Tampering is detected by the reference verifier (the check is real).
    const tampered = { ...rec, body: Buffer.concat([rec.body.subarray(0, -1), Buffer.from(' ')]) };
    assert.notEqual(verifyError(tampered, ep.secret), null);
    assert.notEqual(verifyError(rec, GIVEN_SECRET), null, 'another secret does not verify');
  }
  assert.deepEqual(byId.get(receipts[1].id).json.data, sent[1].data, 'text event: data is the string');
  assert.equal(byId.get(receipts[0].id).json.type, 'created');
  assert.equal(byId.get(receipts[3].id).json.type, 'message');

  const log = await waitDeliveries(api, ep.id, (ds) => ds.length === 4 && ds.every((d) => d.status === 'succeeded'), { what: '4 succeeded' });
  for (const d of log) {
    assert.equal(d.webhook_id, ep.id);
    assert.ok(receipts.some((r) => r.id === d.event_id), `event_id ${d.event_id}`);
    assert.equal(d.attempts.length, 1);
    assert.equal(d.attempts[0].status_code, 200);
  }
  // Exactly once when all goes well.
  await sleep(300);
  assert.equal(recv.requests.length, 4, 'no duplicate deliveries');
});

test('filters: topic patterns and types decide which endpoints get an event', async (t) => {
  const srv = await startServer(t, { args: FAST });
  const recv = await startReceiver(t);
  const api = heraldApi(srv);
  const one = await api.createOk({ url: recv.url('/one'), topics: ['orders/*'], types: ['created'] });
  const all = await api.createOk({ url: recv.url('/all'), topics: ['orders/**'] });
  const every = await api.createOk({ url: recv.url('/every'), topics: ['**'] });
  const two = await api.createOk({ url: recv.url('/two'), topics: ['users/1', 'orders/1/items'], types: ['a', 'b'] });
  for (const s of [one, all, every, two]) recv.addSecret(s.secret);

  const p = async (topic, type) => (await api.publish(topic, { topic, type }, { type })).id;
  const ids = {
    o1created: await p('orders/1', 'created'),
    o1updated: await p('orders/1', 'updated'),
    itemsCreated: await p('orders/1/items', 'created'),
    users1a: await p('users/1', 'a'),
    users1c: await p('users/1', 'c'),
    users2a: await p('users/2', 'a'),
    ordersCreated: await p('orders', 'created'),
    o2created: await p('orders/2', 'created'),
  };
  const sentinel = (await api.publish('orders/9', 'end', { type: 'created' })).id; // matches one, all, every
  await recv.waitEvents([sentinel], { path: '/one' });
  await recv.waitEvents([sentinel], { path: '/all' });
  await recv.waitEvents(Object.values(ids), { path: '/every' });
  await sleep(500); // order is not guaranteed: let any stray delivery arrive

  const got = (path) => [...new Set(recv.matching({ path }).map((r) => r.json.id))].sort((x, y) => x - y);
  const sorted = (...xs) => xs.map(String).sort((x, y) => x - y);
  assert.deepEqual(got('/one'), sorted(ids.o1created, ids.o2created, sentinel), 'orders/* + type created');
  assert.deepEqual(got('/all'), sorted(ids.o1created, ids.o1updated, ids.itemsCreated, ids.o2created, sentinel), 'orders/** (not "orders" itself)');
  assert.deepEqual(got('/every'), sorted(...Object.values(ids), sentinel), '** gets everything');
  assert.deepEqual(got('/two'), sorted(ids.users1a), 'users/1 or orders/1/items, with types a|b');
  for (const r of recv.requests) assert.equal(r.verifiedBy.length, 1, `request ${r.seq} on ${r.path} verifies with its endpoint's secret`);

  // A PATCH of the filters applies to the next events.
  await api.patchOk(one.id, { topics: ['users/**'], types: ['c'] });
  const after = (await api.publish('users/1', 'x', { type: 'c' })).id;
  const notAfter = (await api.publish('orders/3', 'x', { type: 'created' })).id;
  await recv.waitEvents([after], { path: '/one' });
  await recv.waitEvents([notAfter], { path: '/all' });
  await sleep(300);
  assert.equal(recv.matching({ path: '/one', eventId: notAfter }).length, 0, 'old filter no longer applies');
});

test('rotation: two v1 signatures, each verifying with its own secret', async (t) => {
  const srv = await startServer(t, { args: FAST });
  const recv = await startReceiver(t);
  const api = heraldApi(srv);
  const ep = await api.createOk({ url: recv.url('/rot'), topics: ['rot'] });
  const oldSecret = ep.secret;

  const e1 = await api.publish('rot', { before: true });
  const [r1] = await recv.waitRequests(1);
  assertVerified(r1, oldSecret);
  assert.equal(r1.signatures.length, 1);
  assert.equal(r1.json.id, e1.id);

  const rot = await api.rotate(ep.id);
  assert.equal(rot.status, 200, rot.text);
  assert.deepEqual(Object.keys(rot.json), ['secret']);
  const newSecret = rot.json.secret;
  assert.match(newSecret, SECRET_RE);
  assert.notEqual(newSecret, oldSecret);
  const shown = (await api.getOk(ep.id)).secret;
  if (shown !== undefined) assert.equal(shown, newSecret, 'GET shows the new secret');

  const e2 = await api.publish('rot', { after: true });
  const [, r2] = await recv.waitRequests(2);
  assert.equal(r2.json.id, e2.id);
  const sigs = r2.signatures;
  assert.equal(sigs.length, 2, `two space-separated signatures: ${r2.headers['webhook-signature']}`);
  for (const s of sigs) assert.match(s, /^v1,[A-Za-z0-9+/]{43}=$/);
  assertVerified(r2, oldSecret, 'old secret');
  assertVerified(r2, newSecret, 'new secret');
  assert.deepEqual([...sigs].sort(), [expectedSignature(r2, oldSecret), expectedSignature(r2, newSecret)].sort(), 'one signature per secret');
  // Each signature alone verifies with exactly its own secret.
  for (const s of sigs) {
    const alone = { ...r2, headers: { ...r2.headers, 'webhook-signature': s } };
    const withOld = verifyError(alone, oldSecret) === null;
    const withNew = verifyError(alone, newSecret) === null;
    assert.ok(withOld !== withNew, `signature ${s} verifies with exactly one secret`);
  }
});

test('--api-key: the management API needs Authorization: Bearer K (401 JSON otherwise)', async (t) => {
  const key = 'k-webhooks-test-0123456789';
  const srv = await startServer(t, { args: [...FAST, '--api-key', key] });
  const recv = await startReceiver(t);
  const anon = heraldApi(srv);
  const wrong = heraldApi(srv, { key: 'not-the-key' });
  const admin = heraldApi(srv, { key });

  const ep = await admin.createOk({ url: recv.url('/k'), topics: ['k/**'] });
  for (const client of [anon, wrong]) {
    const calls = [
      client.create({ url: recv.url('/k'), topics: ['k'] }),
      client.list(),
      client.get(ep.id),
      client.patch(ep.id, { enabled: false }),
      client.rotate(ep.id),
      client.deliveries(ep.id),
      client.retry(ep.id, '1'),
      client.replay(ep.id, '0'),
      client.del(ep.id),
      client.get('wh_unknown'),
    ];
    for (const res of await Promise.all(calls)) assertError(res, 401, 'unauthorized');
  }
  const viaQuery = await request(`${srv.url}/v1/webhooks?token=${key}`);
  assert.equal(viaQuery.status, 200, `?token= works too: ${viaQuery.text}`);

  // Nothing changed, and delivery works.
  const now = await admin.getOk(ep.id);
  assert.equal(now.enabled, true);
  assert.equal((await admin.list()).json.webhooks.length, 1);
  const e = await admin.publish('k/1', { hi: 1 });
  const [r] = await recv.waitRequests(1);
  assert.equal(r.json.id, e.id);
  assertVerified(r, ep.secret);
  assert.equal(r.headers.authorization, undefined, 'the API key is never sent to the receiver');
  assert.equal((await admin.del(ep.id)).status, 204);
});
