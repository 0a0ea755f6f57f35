// SPEC §4: short and long polling.
import assert from 'node:assert/strict';
import { startServer, test } from './lib/server.mjs';
import { request, get, publishOk, openSse, assertError, assertEpoch, assertEvent, sleep } from './lib/http.mjs';

async function pollOk(base, pq, headers = {}) {
  const r = await get(`${base}${pq}`, { headers });
  assert.equal(r.status, 200, `${pq}: ${r.status} ${r.text}`);
  assert.match(r.headers['content-type'] || '', /^application\/json\b/);
  assert.deepEqual(Object.keys(r.json).sort(), ['events', 'next', 'truncated'], r.text);
  assert.equal(r.headers.etag, `"${r.json.next}"`, `ETag of ${pq}`);
  assertEpoch(r);
  return r;
}

const ids = (r) => r.json.events.map((e) => e.id);

async function publishMany(base, topic, n, start = 0) {
  const out = [];
  for (let i = 0; i < n; i++) out.push((await publishOk(base, topic, { i: start + i })).id);
  return out;
}

test('since / limit / next on one topic', async (t) => {
  const srv = await startServer(t);
  const p = await publishMany(srv.url, 'p/a', 5); // ids 1..5
  assert.deepEqual(p, ['1', '2', '3', '4', '5']);
  let r = await pollOk(srv.url, '/v1/topics/p/a/events?since=0');
  assert.deepEqual(ids(r), p);
  assert.equal(r.json.next, '5');
  assert.equal(r.json.truncated, false);
  r.json.events.forEach((e, i) => assertEvent(e, { id: i + 1, topic: 'p/a', type: 'message', data: { i } }));

  r = await pollOk(srv.url, '/v1/topics/p/a/events?since=2&limit=2');
  assert.deepEqual(ids(r), ['3', '4']);
  assert.equal(r.json.next, '4');
  r = await pollOk(srv.url, `/v1/topics/p/a/events?since=${r.json.next}&limit=2`);
  assert.deepEqual(ids(r), ['5']);
  assert.equal(r.json.next, '5');
  r = await pollOk(srv.url, '/v1/topics/p/a/events?since=5');
  assert.deepEqual(r.json, { events: [], next: '5', truncated: false });
  r = await pollOk(srv.url, '/v1/topics/p/a/events?since=0&limit=1');
  assert.deepEqual(ids(r), ['1']);
  assert.equal(r.json.next, '1');
});

test('absent since: the most recent `limit` events, oldest first; empty topic → next "0"', async (t) => {
  const srv = await startServer(t);
  await publishMany(srv.url, 'recent', 5); // 1..5
  await publishOk(srv.url, 'elsewhere', 'x'); // 6
  let r = await pollOk(srv.url, '/v1/topics/recent/events?limit=2');
  assert.deepEqual(ids(r), ['4', '5']);
  assert.equal(r.json.next, '5');
  assert.equal(r.json.truncated, false);
  r = await pollOk(srv.url, '/v1/topics/recent/events');
  assert.deepEqual(ids(r), ['1', '2', '3', '4', '5']);
  r = await pollOk(srv.url, '/v1/topics/never-used/events');
  assert.deepEqual(r.json, { events: [], next: '0', truncated: false });
  r = await pollOk(srv.url, '/v1/topics/never-used/events?since=0');
  assert.deepEqual(r.json, { events: [], next: '0', truncated: false });
});

test('default limit is 100; limit=1000 returns up to 1000', async (t) => {
  const srv = await startServer(t);
  const body = { events: Array.from({ length: 150 }, (_, i) => ({ topic: 'many', data: i })) };
  const b = await request(`${srv.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  assert.equal(b.status, 201);
  let r = await pollOk(srv.url, '/v1/topics/many/events');
  assert.equal(r.json.events.length, 100);
  assert.equal(r.json.events[0].id, '51');
  assert.equal(r.json.next, '150');
  r = await pollOk(srv.url, '/v1/topics/many/events?since=0');
  assert.equal(r.json.events.length, 100);
  assert.equal(r.json.events[0].id, '1');
  assert.equal(r.json.next, '100');
  r = await pollOk(srv.url, '/v1/topics/many/events?since=0&limit=1000');
  assert.equal(r.json.events.length, 150);
  assert.deepEqual(r.json.events.map((e) => e.data), Array.from({ length: 150 }, (_, i) => i));
});

test('multi-topic GET /v1/events?topic=A&topic=B and patterns * and **', async (t) => {
  const srv = await startServer(t);
  const plan = [
    ['A', 1], ['B', 2], ['C', 3], ['orders/1', 4], ['orders/1/items', 5], ['orders/2', 6], ['A', 7], ['orders', 8],
  ];
  for (const [topic] of plan) await publishOk(srv.url, topic, { topic });
  const q = async (qs) => {
    const r = await pollOk(srv.url, `/v1/events?${qs}`);
    return r;
  };
  let r = await q('topic=A&topic=B&since=0');
  assert.deepEqual(ids(r), ['1', '2', '7']);
  assert.deepEqual(r.json.events.map((e) => e.topic), ['A', 'B', 'A']);
  assert.equal(r.json.next, '7');
  r = await q('topic=orders/*&since=0');
  assert.deepEqual(ids(r), ['4', '6']);
  r = await q(`topic=${encodeURIComponent('orders/*')}&since=0`);
  assert.deepEqual(ids(r), ['4', '6'], 'percent-encoded pattern');
  r = await q('topic=orders/**&since=0');
  assert.deepEqual(ids(r), ['4', '5', '6'], '** needs at least one segment: orders itself is not matched');
  r = await q('topic=*&since=0');
  assert.deepEqual(ids(r), ['1', '2', '3', '7', '8']);
  r = await q('topic=**&since=0');
  assert.deepEqual(ids(r), ['1', '2', '3', '4', '5', '6', '7', '8']);
  r = await q('topic=*/1&since=0');
  assert.deepEqual(ids(r), ['4']);
  r = await q('topic=A&topic=orders/*&limit=2');
  assert.deepEqual(ids(r), ['6', '7'], 'absent since: most recent across the topics');
  r = await q('topic=A&topic=A&since=0');
  assert.deepEqual(ids(r), ['1', '7'], 'a topic named twice gives each event once');
  r = await q('topic=orders/*&topic=orders/**&since=0');
  assert.deepEqual(ids(r), ['4', '5', '6'], 'overlapping patterns give each event once');
  r = await q('topic=nothing/*');
  assert.deepEqual(r.json, { events: [], next: '0', truncated: false });
  r = await q('topic=A&topic=B&since=2');
  assert.deepEqual(ids(r), ['7']);

  for (const bad of ['topic=a//b', 'topic=**/x', 'topic=a/**/b', 'topic=a*', 'topic=', `topic=${'x'.repeat(201)}`]) {
    assertError(await get(`${srv.url}/v1/events?${bad}&since=0`), 400, 'invalid_topic', { context: bad });
  }
  const none = await get(`${srv.url}/v1/events?since=0`);
  assertError(none, 400, ['invalid_parameter', 'invalid_topic'], { context: 'no topic' });
});

test('truncated: events after since left history, or since newer than head', async (t) => {
  const srv = await startServer(t, { args: ['--history-size', '5'] });
  await publishMany(srv.url, 'h', 8); // 1..8, only 4..8 retained
  let r = await pollOk(srv.url, '/v1/topics/h/events?since=0');
  assert.deepEqual(ids(r), ['4', '5', '6', '7', '8']);
  assert.equal(r.json.truncated, false, 'since=0 never reports truncated');
  r = await pollOk(srv.url, '/v1/topics/h/events?since=1');
  assert.deepEqual(ids(r), ['4', '5', '6', '7', '8']);
  assert.equal(r.json.truncated, true);
  r = await pollOk(srv.url, '/v1/topics/h/events?since=2&limit=2');
  assert.deepEqual(ids(r), ['4', '5']);
  assert.equal(r.json.truncated, true);
  r = await pollOk(srv.url, '/v1/topics/h/events?since=3');
  assert.deepEqual(ids(r), ['4', '5', '6', '7', '8']);
  assert.equal(r.json.truncated, false, 'nothing after 3 has left history');
  r = await pollOk(srv.url, '/v1/topics/h/events');
  assert.equal(r.json.truncated, false);
  r = await pollOk(srv.url, '/v1/topics/h/events?since=999999');
  assert.deepEqual(r.json, { events: [], next: '999999', truncated: true });
  r = await pollOk(srv.url, '/v1/topics/h/events?since=8');
  assert.deepEqual(r.json, { events: [], next: '8', truncated: false });
  // An id issued by the store (in another topic) is not "newer than head".
  await publishOk(srv.url, 'other', 'x'); // 9
  r = await pollOk(srv.url, '/v1/topics/h/events?since=9');
  assert.deepEqual(r.json, { events: [], next: '9', truncated: false });
  r = await pollOk(srv.url, '/v1/topics/never/events?since=10');
  assert.deepEqual(r.json, { events: [], next: '10', truncated: true });
  // multi-topic
  r = await pollOk(srv.url, '/v1/events?topic=h&topic=other&since=1');
  assert.deepEqual(ids(r), ['4', '5', '6', '7', '8', '9']);
  assert.equal(r.json.truncated, true);
});

test('a cursor near the head of a long history is found (ids looked up by index, not by scan)', async (t) => {
  const srv = await startServer(t);
  for (let b = 0; b < 3; b++) {
    const body = { events: Array.from({ length: 1000 }, (_, i) => ({ topic: 'long', data: b * 1000 + i })) };
    const r = await request(`${srv.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    assert.equal(r.status, 201);
  }
  // 3000 published, default history 1000: ids 2001..3000 retained.
  let r = await pollOk(srv.url, '/v1/topics/long/events?since=2995');
  assert.deepEqual(ids(r), ['2996', '2997', '2998', '2999', '3000']);
  assert.equal(r.json.truncated, false);
  r = await pollOk(srv.url, '/v1/topics/long/events?since=2000&limit=2');
  assert.deepEqual(ids(r), ['2001', '2002']);
  assert.equal(r.json.truncated, false);
  r = await pollOk(srv.url, '/v1/topics/long/events?since=1999&limit=2');
  assert.deepEqual(ids(r), ['2001', '2002']);
  assert.equal(r.json.truncated, true);
  r = await pollOk(srv.url, '/v1/topics/long/events?since=0&limit=1');
  assert.deepEqual(ids(r), ['2001']);
  const s = await openSse(`${srv.url}/v1/topics/long/stream`, { headers: { 'Last-Event-ID': '2998' } });
  t.after(() => s.close());
  assert.deepEqual((await s.waitEvents(2)).map((e) => e.id), ['2999', '3000']);
});

test('ETag "<next>" and 304 on If-None-Match', async (t) => {
  const srv = await startServer(t);
  await publishMany(srv.url, 'etag', 3);
  let r = await pollOk(srv.url, '/v1/topics/etag/events?since=3');
  assert.equal(r.headers.etag, '"3"');
  const nm = await get(`${srv.url}/v1/topics/etag/events?since=3`, { headers: { 'If-None-Match': '"3"' } });
  assert.equal(nm.status, 304);
  assert.equal(nm.body.length, 0);
  assertEpoch(nm);
  const nm2 = await get(`${srv.url}/v1/topics/etag/events`, { headers: { 'If-None-Match': '"3"' } });
  assert.equal(nm2.status, 304, 'absent since: next is the head, equal to the ETag');
  const changed = await get(`${srv.url}/v1/topics/etag/events?since=2`, { headers: { 'If-None-Match': '"2"' } });
  assert.equal(changed.status, 200, 'there is something newer than 2');
  assert.equal(changed.headers.etag, '"3"');
  assert.deepEqual(changed.json.events.map((e) => e.id), ['3']);
  const other = await get(`${srv.url}/v1/topics/etag/events?since=3`, { headers: { 'If-None-Match': '"1"' } });
  assert.equal(other.status, 200);
  await publishOk(srv.url, 'etag', 'new'); // 4
  const after = await get(`${srv.url}/v1/topics/etag/events?since=3`, { headers: { 'If-None-Match': '"3"' } });
  assert.equal(after.status, 200);
  assert.equal(after.headers.etag, '"4"');
  r = await get(`${srv.url}/v1/events?topic=etag&topic=nope&since=4`, { headers: { 'If-None-Match': '"4"' } });
  assert.equal(r.status, 304, 'multi-topic 304');
});

test('long poll: answered promptly when an event is published during the wait', async (t) => {
  const srv = await startServer(t);
  await publishMany(srv.url, 'lp', 2);
  const started = Date.now();
  const waiting = get(`${srv.url}/v1/topics/lp/events?since=2&wait=10`);
  await sleep(300);
  const rec = await publishOk(srv.url, 'lp', { live: true });
  const published = Date.now();
  const r = await waiting;
  const answered = Date.now();
  assert.equal(r.status, 200, r.text);
  assert.ok(published - started >= 300);
  assert.ok(answered - published < 500, `answered ${answered - published} ms after the publish`);
  assert.equal(r.json.events.length, 1);
  assertEvent(r.json.events[0], { id: rec.id, topic: 'lp', data: { live: true } });
  assert.equal(r.json.next, rec.id);
  assert.equal(r.json.truncated, false);
  assert.equal(r.headers.etag, `"${rec.id}"`);
});

test('long poll: many waiters on many topics and patterns are all woken', async (t) => {
  const srv = await startServer(t);
  const topics = Array.from({ length: 20 }, (_, i) => `room/${i}`);
  const waits = topics.map((tp) => get(`${srv.url}/v1/topics/${tp}/events?since=0&wait=10`));
  const patternWait = get(`${srv.url}/v1/events?topic=room/*&topic=zzz&since=0&wait=10`);
  const emptyNoSince = get(`${srv.url}/v1/topics/room/7/events?wait=10`);
  await sleep(300);
  const t0 = Date.now();
  const recs = [];
  for (const tp of topics) recs.push(await publishOk(srv.url, tp, { tp }));
  const rs = await Promise.all(waits);
  assert.ok(Date.now() - t0 < 3000);
  rs.forEach((r, i) => {
    assert.equal(r.status, 200);
    assert.equal(r.json.events[0].id, recs[i].id, `waiter on ${topics[i]}`);
    assert.equal(r.json.events[0].topic, topics[i]);
  });
  const p = await patternWait;
  assert.equal(p.status, 200);
  assert.equal(p.json.events[0].id, recs[0].id, 'pattern waiter gets the first event');
  const e = await emptyNoSince;
  assert.equal(e.status, 200);
  assert.deepEqual(e.json.events.map((x) => x.id), [recs[7].id], 'without since: waits while the topic is empty');
});

test('long poll without since answers at once when the topic has events', async (t) => {
  const srv = await startServer(t);
  await publishMany(srv.url, 'lpn', 3);
  const r = await get(`${srv.url}/v1/topics/lpn/events?wait=10&limit=2`);
  assert.equal(r.status, 200);
  assert.ok(r.ms < 1000, `answered in ${r.ms} ms`);
  assert.deepEqual(r.json.events.map((e) => e.id), ['2', '3']);
  const r2 = await get(`${srv.url}/v1/topics/lpn/events?since=1&wait=10`);
  assert.ok(r2.ms < 1000, 'something newer than since: answered at once');
  assert.deepEqual(r2.json.events.map((e) => e.id), ['2', '3']);
});

test('long poll timeout → 200 empty, or 304 with If-None-Match', async (t) => {
  const srv = await startServer(t);
  await publishMany(srv.url, 'lpt', 2);
  const r = await get(`${srv.url}/v1/topics/lpt/events?since=2&wait=1`);
  assert.equal(r.status, 200);
  assert.ok(r.ms >= 900 && r.ms < 3000, `timed out after ${r.ms} ms`);
  assert.deepEqual(r.json, { events: [], next: '2', truncated: false });
  assert.equal(r.headers.etag, '"2"');
  const r2 = await get(`${srv.url}/v1/topics/lpt/events?since=2&wait=1`, { headers: { 'If-None-Match': '"2"' } });
  assert.equal(r2.status, 304);
  assert.ok(r2.ms >= 900 && r2.ms < 3000, `304 after ${r2.ms} ms`);
  assert.equal(r2.body.length, 0);
  const r3 = await get(`${srv.url}/v1/topics/empty/events?wait=1`);
  assert.equal(r3.status, 200);
  assert.ok(r3.ms >= 900, `waited ${r3.ms} ms`);
  assert.deepEqual(r3.json, { events: [], next: '0', truncated: false });
  const r4 = await get(`${srv.url}/v1/topics/lpt/events?since=2&wait=0`);
  assert.ok(r4.ms < 500);
  assert.deepEqual(r4.json, { events: [], next: '2', truncated: false });
});

test('a client that disconnects during a long poll does not lose the next event for the cursor', async (t) => {
  const srv = await startServer(t);
  await publishMany(srv.url, 'drop', 1);
  const ac = new AbortController();
  const p = get(`${srv.url}/v1/topics/drop/events?since=1&wait=10`, { signal: ac.signal }).catch(() => null);
  await sleep(200);
  ac.abort();
  await p;
  const rec = await publishOk(srv.url, 'drop', 'after');
  const r = await pollOk(srv.url, '/v1/topics/drop/events?since=1&wait=5');
  assert.deepEqual(ids(r), [rec.id]);
  assert.ok(r.ms < 500);
});

test('responses larger than 1 MiB are delivered whole (1 MiB event; two 700 KB events)', async (t) => {
  const srv = await startServer(t);
  const big = 'b'.repeat(1024 * 1024);
  const rec = await publishOk(srv.url, 'large/one', big, { contentType: 'text/plain' });
  let r = await get(`${srv.url}/v1/topics/large/one/events?since=0&limit=1`);
  assert.equal(r.status, 200);
  assert.equal(r.json.events[0].id, rec.id);
  assert.equal(r.json.events[0].data, big);
  const mid = 'm'.repeat(700 * 1000);
  await publishOk(srv.url, 'large/two', mid, { contentType: 'text/plain' });
  await publishOk(srv.url, 'large/two', mid, { contentType: 'text/plain' });
  r = await get(`${srv.url}/v1/topics/large/two/events?since=0`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.events.map((e) => e.data.length), [700000, 700000]);
});

test('limit / wait / since bounds → 400', async (t) => {
  const srv = await startServer(t);
  await publishOk(srv.url, 'b', '1');
  for (const q of ['limit=1', 'limit=1000', 'wait=0', 'limit=100&since=0']) {
    const r = await get(`${srv.url}/v1/topics/b/events?${q}`);
    assert.equal(r.status, 200, `${q}: ${r.text}`);
  }
  for (const q of ['limit=0', 'limit=1001', 'limit=-1', 'limit=abc', 'limit=', 'limit=1.5', 'wait=61', 'wait=-1', 'wait=abc', 'wait=', 'limit=99999999999999999999999']) {
    for (const path of ['/v1/topics/b/events', '/v1/events?topic=b']) {
      const sep = path.includes('?') ? '&' : '?';
      assertError(await get(`${srv.url}${path}${sep}${q}`), 400, 'invalid_parameter', { context: `${path} ${q}` });
    }
  }
  for (const q of ['since=abc', 'since=-1', 'since=1.0', 'since=', 'since=0x10', 'since=99999999999999999999999999']) {
    assertError(await get(`${srv.url}/v1/topics/b/events?${q}`), 400, 'invalid_id', { context: q });
  }
  const slow = await get(`${srv.url}/v1/topics/b/events?since=1&wait=60&limit=1`, { timeout: 200 }).catch((e) => e);
  assert.ok(slow instanceof Error, 'wait=60 is accepted (still waiting after 200 ms)');
});
