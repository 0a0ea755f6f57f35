// SPEC §1 (events, data rules), §2 (errors), §3 (publishing).
import assert from 'node:assert/strict';
import { startServer, test } from './lib/server.mjs';
import {
  request, publish, publishOk, get, assertError, assertEpoch, assertEvent, EPOCH_RE, TIME_RE, ID_RE,
} from './lib/http.mjs';

async function history(base, topic) {
  const r = await get(`${base}/v1/topics/${topic}/events?since=0&limit=1000`);
  assert.equal(r.status, 200, r.text);
  return r.json.events;
}

function assertReceipt(r, { topic, type = 'message' }) {
  assert.equal(r.status, 201, r.text);
  assert.match(r.headers['content-type'] || '', /^application\/json\b/);
  assert.deepEqual(Object.keys(r.json).sort(), ['id', 'time', 'topic', 'type'], r.text);
  assert.match(r.json.id, ID_RE);
  assert.notEqual(r.json.id, '0');
  assert.equal(r.json.topic, topic);
  assert.equal(r.json.type, type);
  assert.match(r.json.time, TIME_RE);
  const t = Date.parse(r.json.time);
  assert.ok(Math.abs(t - Date.now()) < 10000, `time ${r.json.time} is now`);
  return r.json;
}

test('single publish: 201 receipt shape, ids 1,2,3, stored event matches, Herald-Epoch', async (t) => {
  const srv = await startServer(t);
  const r1 = await publish(srv.url, 'orders/123', '{ "a" : 1, "b": [true, null, "x"] }');
  const epoch = assertEpoch(r1);
  const rec1 = assertReceipt(r1, { topic: 'orders/123' });
  assert.equal(rec1.id, '1', 'the first event of a new store has id 1');
  const r2 = await publish(srv.url, 'orders/123', { n: 2 }, { type: 'status' });
  assertEpoch(r2, epoch);
  assert.equal(assertReceipt(r2, { topic: 'orders/123', type: 'status' }).id, '2');
  const r3 = await publish(srv.url, 'other', '3');
  assert.equal(assertReceipt(r3, { topic: 'other' }).id, '3', 'ids are store-wide');

  const evs = await history(srv.url, 'orders/123');
  assert.equal(evs.length, 2);
  assertEvent(evs[0], { id: 1, topic: 'orders/123', type: 'message', data: { a: 1, b: [true, null, 'x'] } });
  assert.equal(evs[0].time, rec1.time, 'stored time is the receipt time');
  assertEvent(evs[1], { id: 2, topic: 'orders/123', type: 'status', data: { n: 2 } });
  assertEvent((await history(srv.url, 'other'))[0], { id: 3, topic: 'other', data: 3 });
  assert.match(epoch, EPOCH_RE);
});

test('data rules by Content-Type (SPEC §1)', async (t) => {
  const srv = await startServer(t);
  const cases = [
    // [content-type or null, body, expected data]
    ['application/json', '{"k":"v","n":[1,2.5,-3e2]}', { k: 'v', n: [1, 2.5, -300] }],
    ['application/json; charset=utf-8', '"a string"', 'a string'],
    ['application/json', ' 42 ', 42],
    ['application/json', 'null', null],
    ['application/json', '"\\u00e9\\ud83d\\ude00"', 'é😀'],
    ['text/plain', 'hello world', 'hello world'],
    ['text/plain; charset=utf-8', '{"looks":"like json"}', '{"looks":"like json"}'],
    ['text/plain', '123', '123'],
    ['text/markdown', '# héllo 😀', '# héllo 😀'],
    ['text/plain', '', ''],
    [null, '{"x":1}', { x: 1 }],
    [null, '[1,"two"]', [1, 'two']],
    [null, 'true', true],
    [null, 'hello', 'hello'],
    [null, '{"broken":', '{"broken":'],
    [null, 'line1\nline2', 'line1\nline2'],
    ['application/x-www-form-urlencoded', 'a=b&c=d', 'a=b&c=d'],
    ['application/x-www-form-urlencoded', '{"k":"v"}', { k: 'v' }],
    ['application/x-www-form-urlencoded', '7', 7],
  ];
  let n = 0;
  for (const [ct, body, expected] of cases) {
    const topic = `ct/${n++}`;
    const r = await publish(srv.url, topic, Buffer.from(body, 'utf8'), { contentType: ct });
    assert.equal(r.status, 201, `${ct} ${JSON.stringify(body)}: ${r.status} ${r.text}`);
    const evs = await history(srv.url, topic);
    assert.equal(evs.length, 1);
    assert.deepEqual(evs[0].data, expected, `${ct} ${JSON.stringify(body)} -> ${JSON.stringify(evs[0].data)}`);
  }
});

test('?type= sets the type; default is message; invalid types → 400 invalid_type', async (t) => {
  const srv = await startServer(t);
  const ok = ['status', 'a', 'A.b_c:d-9', 'x'.repeat(64)];
  for (const type of ok) {
    const r = await publish(srv.url, 'types', { type }, { type });
    assertReceipt(r, { topic: 'types', type });
  }
  const bad = ['', 'a b', 'a/b', 'x'.repeat(65), 'é', 'a*', 'a,b', 'a%b'];
  for (const type of bad) {
    const r = await publish(srv.url, 'types', '1', { type });
    assertError(r, 400, 'invalid_type', { context: `type ${JSON.stringify(type)}` });
    assertEpoch(r);
  }
  assert.equal((await history(srv.url, 'types')).length, ok.length, 'nothing stored for a bad type');
});

test('invalid topics → 400 invalid_topic; 200-byte topic accepted', async (t) => {
  const srv = await startServer(t);
  const long = `${'a'.repeat(99)}/${'b'.repeat(100)}`; // 200 bytes
  assert.equal(long.length, 200);
  assertReceipt(await publish(srv.url, long, '1'), { topic: long });
  assertReceipt(await publish(srv.url, 'A-z_0.9:@x/y-z', '1'), { topic: 'A-z_0.9:@x/y-z' });
  const bad = [
    'a'.repeat(201),
    'a b',
    'a//b',
    '/a',
    'a/',
    'a/*',
    'a/**',
    'é',
    'a+b',
    'a%b',
    'a?b',
    'a#b',
  ];
  for (const topic of bad) {
    const encoded = encodeURIComponent(topic); // slashes encoded too: decoded back to the same name
    const r = await publish(srv.url, encoded, '1', { encodeTopic: false });
    assertError(r, 400, 'invalid_topic', { context: `topic ${JSON.stringify(topic)}` });
  }
  // Raw, unencoded empty segment in the path.
  assertError(await publish(srv.url, 'a//b', '1', { encodeTopic: false }), 400, 'invalid_topic', { context: 'a//b raw' });
});

test('percent-decoded path segments: orders%2F123 is the topic orders/123', async (t) => {
  const srv = await startServer(t);
  const r = await publish(srv.url, 'orders%2F123', { via: 'encoded' }, { encodeTopic: false });
  assertReceipt(r, { topic: 'orders/123' });
  const r2 = await publish(srv.url, 'orders/123', { via: 'plain' });
  assertReceipt(r2, { topic: 'orders/123' });
  const r3 = await publish(srv.url, 'a%3Ab%40c', '1', { encodeTopic: false });
  assertReceipt(r3, { topic: 'a:b@c' });
  const evs = await history(srv.url, 'orders/123');
  assert.deepEqual(evs.map((e) => e.data), [{ via: 'encoded' }, { via: 'plain' }]);
  const evs2 = await history(srv.url, 'orders%2F123');
  assert.deepEqual(evs2.map((e) => e.id), evs.map((e) => e.id), 'polling with the encoded name reads the same topic');
});

test('batch POST /v1/events: 201 {"ids":[…]} consecutive, in order, all stored', async (t) => {
  const srv = await startServer(t);
  await publishOk(srv.url, 'pre', '0'); // id 1
  const r = await request(`${srv.url}/v1/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: {
      events: [
        { topic: 'b/1', type: 'created', data: { x: 1 } },
        { topic: 'b/2', data: 'text data' },
        { topic: 'b/1', type: 'updated', data: [1, 2] },
      ],
    },
  });
  assert.equal(r.status, 201, r.text);
  assertEpoch(r);
  assert.deepEqual(r.json, { ids: ['2', '3', '4'] });
  const b1 = await history(srv.url, 'b/1');
  assert.equal(b1.length, 2);
  assertEvent(b1[0], { id: 2, topic: 'b/1', type: 'created', data: { x: 1 } });
  assertEvent(b1[1], { id: 4, topic: 'b/1', type: 'updated', data: [1, 2] });
  assert.equal(b1[0].time <= b1[1].time, true);
  const b2 = await history(srv.url, 'b/2');
  assertEvent(b2[0], { id: 3, topic: 'b/2', type: 'message', data: 'text data' });
});

test('batch of 1000 is accepted; 0 and 1001 → 400 and nothing stored', async (t) => {
  const srv = await startServer(t);
  const mk = (n) => ({ events: Array.from({ length: n }, (_, i) => ({ topic: 'bulk', type: 'n', data: { i } })) });
  const r = await request(`${srv.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: mk(1000) });
  assert.equal(r.status, 201, r.text.slice(0, 300));
  assert.equal(r.json.ids.length, 1000);
  assert.deepEqual(r.json.ids, Array.from({ length: 1000 }, (_, i) => String(i + 1)));
  for (const n of [0, 1001]) {
    const bad = await request(`${srv.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: mk(n) });
    assertError(bad, 400, ['invalid_parameter', 'invalid_json'], { context: `batch of ${n}` });
  }
  const all = await get(`${srv.url}/v1/topics/bulk/events?since=1000`);
  assert.deepEqual(all.json.events, [], 'nothing stored by the rejected batches');
  const next = await publishOk(srv.url, 'bulk', '1');
  assert.equal(next.id, '1001', 'rejected batches consumed no ids');
});

test('batch is atomic: one bad item (topic, type, shape) → 400 and nothing stored', async (t) => {
  const srv = await startServer(t);
  const post = (body, ct = 'application/json') =>
    request(`${srv.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': ct }, body });
  assertError(await post({ events: [{ topic: 'ok', data: 1 }, { topic: 'bad topic', data: 2 }] }), 400, 'invalid_topic');
  assertError(await post({ events: [{ topic: 'ok', data: 1 }, { topic: 'ok', type: 'bad type', data: 2 }] }), 400, 'invalid_type');
  assertError(await post('{"events":[{"topic":"ok","data":1},]}'), 400, 'invalid_json', { position: 35 });
  for (const body of [{}, { events: 'x' }, { events: [1] }, [], { events: [{ data: 1 }] }]) {
    const r = await post(body);
    assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${r.text}`);
    assertError(r, 400, ['invalid_parameter', 'invalid_json', 'invalid_topic'], { context: JSON.stringify(body) });
  }
  assertError(await post('{"events":[]}', 'text/xml'), 415, 'unsupported_media_type');
  assert.deepEqual(await history(srv.url, 'ok'), []);
  assert.equal((await publishOk(srv.url, 'ok', '1')).id, '1');
});

test('Idempotency-Key: replay answers 200 with the original body and stores nothing', async (t) => {
  const srv = await startServer(t);
  const key = 'order-123-created';
  const r1 = await publish(srv.url, 'idem', { v: 1 }, { headers: { 'Idempotency-Key': key } });
  const rec = assertReceipt(r1, { topic: 'idem' });
  assert.equal(r1.headers['idempotent-replayed'], undefined, 'the first answer is not a replay');

  const r2 = await publish(srv.url, 'idem', { v: 2 }, { headers: { 'Idempotency-Key': key } });
  assert.equal(r2.status, 200, r2.text);
  assert.equal(r2.headers['idempotent-replayed'], 'true');
  assert.equal(r2.text, r1.text, 'same body, byte for byte');
  assertEpoch(r2, r1.headers['herald-epoch']);

  // store-wide: another topic, another type, same key → still the original answer
  const r3 = await publish(srv.url, 'other/topic', 'x', { type: 'zzz', contentType: 'text/plain', headers: { 'Idempotency-Key': key } });
  assert.equal(r3.status, 200);
  assert.equal(r3.headers['idempotent-replayed'], 'true');
  assert.equal(r3.text, r1.text);

  assert.deepEqual((await history(srv.url, 'idem')).map((e) => e.data), [{ v: 1 }]);
  assert.deepEqual(await history(srv.url, 'other/topic'), []);
  const r4 = await publish(srv.url, 'idem', { v: 3 }, { headers: { 'Idempotency-Key': `${key}-2` } });
  assert.equal(assertReceipt(r4, { topic: 'idem' }).id, String(Number(rec.id) + 1), 'replays consumed no id');

  // 200 bytes is allowed, 201 is not
  const k200 = 'k'.repeat(200);
  assertReceipt(await publish(srv.url, 'idem', '1', { headers: { 'Idempotency-Key': k200 } }), { topic: 'idem' });
  const long = await publish(srv.url, 'idem', '1', { headers: { 'Idempotency-Key': 'k'.repeat(201) } });
  assertError(long, 400, 'invalid_parameter', { context: '201-byte Idempotency-Key' });
});

test('Idempotency-Key on a batch replays the batch receipt', async (t) => {
  const srv = await startServer(t);
  const body = { events: [{ topic: 'ib', data: 1 }, { topic: 'ib', data: 2 }] };
  const opts = { method: 'POST', headers: { 'Content-Type': 'application/json', 'Idempotency-Key': 'batch-1' }, body };
  const r1 = await request(`${srv.url}/v1/events`, opts);
  assert.equal(r1.status, 201);
  assert.deepEqual(r1.json, { ids: ['1', '2'] });
  const r2 = await request(`${srv.url}/v1/events`, opts);
  assert.equal(r2.status, 200);
  assert.equal(r2.headers['idempotent-replayed'], 'true');
  assert.equal(r2.text, r1.text);
  assert.equal((await history(srv.url, 'ib')).length, 2);
});

test('concurrent publishes with the same Idempotency-Key store exactly one event', async (t) => {
  const srv = await startServer(t);
  const rs = await Promise.all(
    Array.from({ length: 20 }, (_, i) => publish(srv.url, 'race', { i }, { headers: { 'Idempotency-Key': 'same' } })),
  );
  const created = rs.filter((r) => r.status === 201);
  const replayed = rs.filter((r) => r.status === 200);
  assert.equal(created.length, 1, rs.map((r) => r.status).join(','));
  assert.equal(replayed.length, 19);
  for (const r of replayed) {
    assert.equal(r.text, created[0].text);
    assert.equal(r.headers['idempotent-replayed'], 'true');
  }
  assert.equal((await history(srv.url, 'race')).length, 1);
});

test('other content types → 415 unsupported_media_type, nothing stored', async (t) => {
  const srv = await startServer(t);
  for (const ct of ['application/xml', 'application/octet-stream', 'image/png', 'multipart/form-data; boundary=x', 'application/jsonx', 'texts/plain']) {
    const r = await publish(srv.url, 'media', '{"a":1}', { contentType: ct });
    assertError(r, 415, 'unsupported_media_type', { context: ct });
    assertEpoch(r);
  }
  assert.deepEqual(await history(srv.url, 'media'), []);
});

test('invalid JSON → 400 invalid_json with the exact byte position', async (t) => {
  const srv = await startServer(t);
  const cases = [
    ['{"a":1,}', 7],
    ['[1,2', 4],
    ['{"a" 1}', 5],
    ['  x', 2],
    ['{"a":1} x', 8],
    ['', 0],
    ['{"a":[1,2]]', 10],
    ['[01]', 2],
    ['"abc', 4],
    ['{"é":1,,}', 8], // é is two bytes: the position counts bytes
    ['[1,\n2,\n]', 7],
    ['{"a":"\u0001"}', 6], // raw control character in a string
  ];
  for (const [body, position] of cases) {
    const r = await publish(srv.url, 'badjson', Buffer.from(body, 'utf8'), { contentType: 'application/json' });
    assertError(r, 400, 'invalid_json', { position, context: JSON.stringify(body) });
    assertEpoch(r);
  }
  assert.deepEqual(await history(srv.url, 'badjson'), []);
});

test('invalid UTF-8 → 400 invalid_utf8 with the exact byte position', async (t) => {
  const srv = await startServer(t);
  const b = (...parts) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
  // The position is that of the first byte at which the input stops being valid UTF-8 (the byte
  // an incremental validator fails on): the bad byte itself, or the end for a truncated sequence.
  const cases = [
    [b('hello ', [0xff], ' world'), 6, 'stray 0xff'],
    [b('ab', [0xc0, 0xaf]), 2, 'overlong / (0xc0 is never valid)'],
    [b('ab', [0xe0, 0x80, 0xaf]), 3, 'overlong three-byte form'],
    [b('abc', [0xe2, 0x82]), 5, 'truncated at the end'],
    [b('é', [0xed, 0xa0, 0x80], 'x'), 3, 'UTF-16 surrogate'],
    [b([0x80]), 0, 'lone continuation byte'],
    [b('x', [0xf4, 0x90, 0x80, 0x80]), 2, 'above U+10FFFF'],
    [b('x', [0xf5, 0x80]), 1, '0xf5 is never valid'],
    [b('ok', [0xe2, 0x28, 0xa1]), 3, 'bad continuation'],
  ];
  for (const ct of ['text/plain', null, 'application/x-www-form-urlencoded']) {
    for (const [body, position, what] of cases) {
      const r = await publish(srv.url, 'badutf8', body, { contentType: ct });
      assertError(r, 400, 'invalid_utf8', { position, context: `${ct}: ${what}` });
    }
  }
  // Inside a JSON string sent as application/json the fault is still reported at its byte.
  const r = await publish(srv.url, 'badutf8', b('{"a":"x', [0xff], '"}'), { contentType: 'application/json' });
  assertError(r, 400, ['invalid_utf8', 'invalid_json'], { position: 7, context: 'bad UTF-8 inside JSON' });
  assert.deepEqual(await history(srv.url, 'badutf8'), []);
  // Valid multi-byte text is fine.
  const ok = await publish(srv.url, 'badutf8', b('€ 😀 ü'), { contentType: 'text/plain' });
  assert.equal(ok.status, 201);
  assert.deepEqual((await history(srv.url, 'badutf8')).map((e) => e.data), ['€ 😀 ü']);
});
