// SPEC §1: an acknowledged publish is durable (survives kill -9); ids only grow; the epoch
// identifies the store. §5: resume across a restart.
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { startServer, test } from './lib/server.mjs';
import { get, publish, publishOk, openSse, assertEpoch, waitFor } from './lib/http.mjs';

async function all(base, topic) {
  const r = await get(`${base}/v1/topics/${topic}/events?since=0&limit=1000`);
  assert.equal(r.status, 200, r.text);
  return r;
}

test('kill -9 right after a 201: the event is there after restart, same id, time and epoch', async (t) => {
  const srv = await startServer(t);
  const r = await publish(srv.url, 'durable', { important: true }, { type: 'created' });
  assert.equal(r.status, 201);
  await srv.kill9();
  const epoch = r.headers['herald-epoch'];
  await srv.restart();
  const after = await all(srv.url, 'durable');
  assertEpoch(after, epoch);
  assert.deepEqual(after.json.events, [
    { id: r.json.id, topic: 'durable', type: 'created', time: r.json.time, data: { important: true } },
  ]);
  const next = await publishOk(srv.url, 'durable', 2);
  assert.ok(Number(next.id) > Number(r.json.id), `id ${next.id} after ${r.json.id}`);
});

test('kill -9 in the middle of concurrent publishes: every acknowledged event survives, ids only grow', async (t) => {
  const srv = await startServer(t);
  const acked = [];
  let killed = false;
  let nextIndex = 0;
  const worker = async () => {
    while (nextIndex < 200) {
      const i = nextIndex++;
      let r;
      try {
        r = await publish(srv.url, `crash/${i % 4}`, { i });
      } catch (e) {
        if (killed) return; // connection refused or reset after the kill
        throw e;
      }
      if (r.status === 201) {
        acked.push({ ...r.json, i });
        if (acked.length === 60 && !killed) {
          killed = true;
          srv.process.kill('SIGKILL'); // right after this 201
        }
      } else {
        throw new Error(`publish ${i}: ${r.status} ${r.text}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  await srv.kill9();
  assert.ok(killed);
  assert.ok(acked.length >= 60);
  await srv.restart();
  const stored = new Map();
  const seen = [];
  for (let k = 0; k < 4; k++) {
    const r = await all(srv.url, `crash/${k}`);
    assert.equal(r.json.truncated, false);
    for (const ev of r.json.events) {
      stored.set(ev.id, ev);
      seen.push(Number(ev.id));
    }
    const idsHere = r.json.events.map((e) => Number(e.id));
    assert.deepEqual(idsHere, [...idsHere].sort((a, b) => a - b), 'oldest first');
  }
  assert.equal(new Set(seen).size, seen.length, 'no id twice');
  for (const a of acked) {
    const ev = stored.get(a.id);
    assert.ok(ev, `acknowledged event ${a.id} lost`);
    assert.deepEqual(ev, { id: a.id, topic: a.topic, type: 'message', time: a.time, data: { i: a.i } });
  }
  const maxSeen = Math.max(...seen);
  const next = await publishOk(srv.url, 'crash/0', 'after');
  assert.ok(Number(next.id) > maxSeen, `new id ${next.id} > ${maxSeen}`);
});

test('ids keep growing across graceful and kill -9 restarts; the epoch stays, a new store gets another', async (t) => {
  const srv = await startServer(t);
  const first = await publish(srv.url, 'grow', 1);
  const epoch = first.headers['herald-epoch'];
  let last = Number(first.json.id);
  for (const graceful of [true, false, true]) {
    if (!graceful) await publishOk(srv.url, 'grow', 'x'); // something to lose if ids were reused
    const before = (await all(srv.url, 'grow')).json.next;
    last = Math.max(last, Number(before));
    await srv.restart({ graceful });
    const r = await publish(srv.url, 'grow', { graceful });
    assert.equal(r.status, 201);
    assertEpoch(r, epoch);
    assert.ok(Number(r.json.id) > last, `id ${r.json.id} after ${last} (graceful=${graceful})`);
    last = Number(r.json.id);
  }
  const ids = (await all(srv.url, 'grow')).json.events.map((e) => Number(e.id));
  assert.deepEqual(ids, [...new Set(ids)].sort((a, b) => a - b));
  const other = await startServer(t);
  const r2 = await get(`${other.url}/healthz`);
  assert.notEqual(assertEpoch(r2), epoch, 'a new store has a new epoch');
});

test('Idempotency-Key survives kill -9', async (t) => {
  const srv = await startServer(t);
  const r1 = await publish(srv.url, 'ik', { v: 1 }, { headers: { 'Idempotency-Key': 'k1' } });
  assert.equal(r1.status, 201);
  await srv.kill9();
  await srv.restart();
  const r2 = await publish(srv.url, 'ik', { v: 2 }, { headers: { 'Idempotency-Key': 'k1' } });
  assert.equal(r2.status, 200);
  assert.equal(r2.headers['idempotent-replayed'], 'true');
  assert.equal(r2.text, r1.text);
  assert.equal((await all(srv.url, 'ik')).json.events.length, 1);
});

test('history limits still apply after a restart', async (t) => {
  const srv = await startServer(t, { args: ['--history-size', '3'] });
  for (let i = 0; i < 5; i++) await publishOk(srv.url, 'hs', i);
  await srv.restart();
  let r = await all(srv.url, 'hs');
  assert.deepEqual(r.json.events.map((e) => e.id), ['3', '4', '5']);
  await publishOk(srv.url, 'hs', 5);
  r = await get(`${srv.url}/v1/topics/hs/events?since=1`);
  assert.deepEqual(r.json.events.map((e) => e.id), ['4', '5', '6']);
  assert.equal(r.json.truncated, true);
});

test('SSE resume with Last-Event-ID across a restart', async (t) => {
  const srv = await startServer(t);
  const s1 = await openSse(`${srv.url}/v1/topics/across/stream`);
  t.after(() => s1.close());
  await s1.waitItem((x) => x.kind === 'retry');
  for (let i = 1; i <= 3; i++) await publishOk(srv.url, 'across', { i });
  const got = await s1.waitEvents(3);
  assert.deepEqual(got.map((e) => e.id), ['1', '2', '3']);
  const stopping = srv.stop();
  assert.equal(await s1.waitEnded(10000), true, 'SIGTERM ends the stream');
  assert.equal(s1.parser.cur, null, 'the stream ends on an event boundary');
  assert.equal(s1.parser.pending, '', 'the stream ends on a line end');
  await stopping;
  await srv.restart();
  for (let i = 4; i <= 5; i++) await publishOk(srv.url, 'across', { i });
  const s2 = await openSse(`${srv.url}/v1/topics/across/stream`, { headers: { 'Last-Event-ID': got.at(-1).id } });
  t.after(() => s2.close());
  assert.deepEqual((await s2.waitEvents(2)).map((e) => e.id), ['4', '5']);
  await publishOk(srv.url, 'across', { i: 6 });
  const evs = await s2.waitEvents(3);
  assert.deepEqual(evs.map((e) => JSON.parse(e.data).i), [4, 5, 6]);
});

test('npm eventsource reconnects after a server restart and misses nothing', { timeout: 60000 }, async (t) => {
  const srv = await startServer(t);
  const received = [];
  let opens = 0;
  const es = new EventSource(`${srv.url}/v1/topics/es/stream`);
  t.after(() => es.close());
  es.addEventListener('open', () => (opens += 1));
  es.addEventListener('message', (ev) => received.push([ev.lastEventId, JSON.parse(ev.data)]));
  es.addEventListener('herald.reset', (ev) => received.push(['reset', ev.data]));
  await waitFor(() => opens === 1, { message: 'open' });
  const want = [];
  for (let i = 0; i < 3; i++) want.push([(await publishOk(srv.url, 'es', { i })).id, { i }]);
  await waitFor(() => received.length === 3, { message: '3 events' });
  await srv.restart({ graceful: false });
  for (let i = 3; i < 6; i++) want.push([(await publishOk(srv.url, 'es', { i })).id, { i }]);
  await waitFor(() => opens === 2, { timeout: 15000, message: 'EventSource reconnected' });
  for (let i = 6; i < 8; i++) want.push([(await publishOk(srv.url, 'es', { i })).id, { i }]);
  await waitFor(() => received.length >= 8, { timeout: 5000, message: '8 events' });
  es.close();
  assert.deepEqual(received, want);
});
