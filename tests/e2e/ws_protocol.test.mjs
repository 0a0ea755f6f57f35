// SPEC §6: herald's multiplexed JSON protocol on GET /v1/ws, driven with the npm `ws` client,
// with and without permessage-deflate.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import WebSocket from 'ws';
import { startServer, test } from './lib/server.mjs';
import { ID_RE, TIME_RE, get, publishOk, request, sleep } from './lib/http.mjs';

/** A `ws` client that queues every JSON message it receives. */
class Client {
  static open(srv, { deflate = false, path = '/v1/ws', protocol = 'herald.v1' } = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${srv.port}${path}`, protocol ? [protocol] : [], {
        perMessageDeflate: deflate ? { threshold: 0 } : false,
      });
      const c = new Client(ws);
      ws.once('upgrade', (res) => (c.upgradeHeaders = res.headers));
      ws.once('open', () => resolve(c));
      ws.once('error', reject);
      ws.once('unexpected-response', (req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.all = [];
    this.arrivals = []; // [msg, time]
    this.waiters = new Set();
    this.closed = null;
    this.nonJson = [];
    ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false, 'herald sends text frames only');
      const text = data.toString('utf8');
      let msg;
      try {
        msg = JSON.parse(text);
      } catch {
        this.nonJson.push(text);
        return;
      }
      this.queue.push(msg);
      this.all.push(msg);
      this.arrivals.push([msg, performance.now()]);
      this._wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this._wake();
    });
    ws.on('error', () => {});
  }

  _wake() {
    for (const w of [...this.waiters]) w();
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  /** Removes and returns the first queued message matching pred (waits for it). */
  take(pred = () => true, timeout = 5000, what = 'a message') {
    return new Promise((resolve, reject) => {
      const tick = () => {
        const i = this.queue.findIndex(pred);
        if (i >= 0) {
          const [m] = this.queue.splice(i, 1);
          done();
          resolve(m);
        } else if (this.closed) {
          done();
          reject(new Error(`closed (${this.closed.code} ${this.closed.reason}) while waiting for ${what}; queue ${JSON.stringify(this.queue).slice(0, 1500)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${timeout} ms waiting for ${what}; queue ${JSON.stringify(this.queue).slice(0, 1500)}`));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(tick);
      };
      this.waiters.add(tick);
      tick();
    });
  }

  /** Sends a request and takes the reply carrying its ref. */
  async call(obj, timeout = 5000) {
    this.send(obj);
    return this.take((m) => m.op !== 'event' && JSON.stringify(m.ref) === JSON.stringify(obj.ref), timeout, `the reply to ${JSON.stringify(obj)}`);
  }

  /** Takes n event messages (in arrival order). */
  async events(n, timeout = 5000) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await this.take((m) => m.op === 'event', timeout, `event ${i + 1} of ${n}`));
    return out;
  }

  /** Asserts no event arrives for ms. */
  async noEvent(ms = 200) {
    await sleep(ms);
    const ev = this.queue.filter((m) => m.op === 'event');
    assert.deepEqual(ev, [], 'no further event');
  }

  close() {
    try {
      this.ws.terminate();
    } catch {
      /* ignore */
    }
  }
}

async function client(t, srv, opts) {
  const c = await Client.open(srv, opts);
  t.after(() => c.close());
  return c;
}

function assertWsEvent(m, { topic, id, type = 'message', data }) {
  assert.deepEqual(Object.keys(m).sort(), ['data', 'id', 'op', 'time', 'topic', 'type'], `event keys ${JSON.stringify(m)}`);
  assert.equal(m.op, 'event');
  assert.match(m.id, ID_RE);
  assert.match(m.time, TIME_RE);
  if (topic !== undefined) assert.equal(m.topic, topic);
  if (id !== undefined) assert.equal(m.id, String(id));
  assert.equal(m.type, type);
  if (data !== undefined) assert.deepEqual(m.data, data);
}

function assertErrorOp(m, ref, code) {
  const keys = ref === undefined ? ['code', 'message', 'op'] : ['code', 'message', 'op', 'ref'];
  assert.deepEqual(Object.keys(m).sort(), keys, `error keys ${JSON.stringify(m)}`);
  assert.equal(m.op, 'error');
  if (ref !== undefined) assert.deepEqual(m.ref, ref);
  assert.equal(m.code, code, JSON.stringify(m));
  assert.equal(typeof m.message, 'string');
  assert.ok(m.message.length > 0);
}

for (const deflate of [false, true]) {
  describe(`JSON protocol (${deflate ? 'permessage-deflate' : 'no compression'})`, () => {
    test('handshake: herald.v1 chosen, extension as asked; accepted without a subprotocol too', async (t) => {
      const srv = await startServer(t);
      const c = await client(t, srv, { deflate });
      assert.equal(c.ws.protocol, 'herald.v1');
      assert.equal(c.upgradeHeaders['sec-websocket-protocol'], 'herald.v1');
      if (deflate) {
        assert.equal(c.ws.extensions, 'permessage-deflate');
        assert.equal(c.upgradeHeaders['sec-websocket-extensions'], 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
      } else {
        assert.equal(c.ws.extensions, '');
        assert.equal(c.upgradeHeaders['sec-websocket-extensions'], undefined);
      }
      const bare = await client(t, srv, { deflate, protocol: null });
      assert.equal(bare.ws.protocol, '');
      assert.deepEqual(await bare.call({ op: 'ping', ref: 'p' }), { op: 'pong', ref: 'p' });
    });

    test('ping/pong with ref echoed as written (string, number, object, absent)', async (t) => {
      const srv = await startServer(t);
      const c = await client(t, srv, { deflate });
      assert.deepEqual(await c.call({ op: 'ping', ref: '1' }), { op: 'pong', ref: '1' });
      assert.deepEqual(await c.call({ op: 'ping', ref: 42 }), { op: 'pong', ref: 42 });
      assert.deepEqual(await c.call({ op: 'ping', ref: { a: [1, 'x'] } }), { op: 'pong', ref: { a: [1, 'x'] } });
      c.send({ op: 'ping' });
      assert.deepEqual(await c.take(), { op: 'pong' });
    });

    test('subscribe → subscribed {op, topic, ref, next}; live events; unsubscribe → unsubscribed', async (t) => {
      const srv = await startServer(t);
      const c = await client(t, srv, { deflate });
      assert.deepEqual(await c.call({ op: 'subscribe', topic: 'orders/1', ref: 's1' }), { op: 'subscribed', topic: 'orders/1', ref: 's1', next: '0' });
      const r1 = await publishOk(srv.url, 'orders/1', { n: 1 });
      const [e1] = await c.events(1);
      assertWsEvent(e1, { topic: 'orders/1', id: r1.id, data: { n: 1 } });
      assert.equal(e1.time, r1.time);
      const r2 = await publishOk(srv.url, 'orders/1', 'text body', { contentType: 'text/plain', type: 'status' });
      assertWsEvent((await c.events(1))[0], { topic: 'orders/1', id: r2.id, type: 'status', data: 'text body' });
      await publishOk(srv.url, 'orders/2', { other: true });
      assert.deepEqual(await c.call({ op: 'unsubscribe', topic: 'orders/1', ref: 'u1' }), { op: 'unsubscribed', topic: 'orders/1', ref: 'u1' });
      await publishOk(srv.url, 'orders/1', { n: 3 });
      await c.noEvent(200);
      // A second subscribe without since: next is the newest id of the store.
      assert.deepEqual(await c.call({ op: 'subscribe', topic: 'orders/1', ref: 's2' }), { op: 'subscribed', topic: 'orders/1', ref: 's2', next: '4' });
      await c.noEvent(100);
      // Unsubscribing what is not subscribed, and subscribing twice, are errors.
      assertErrorOp(await c.call({ op: 'unsubscribe', topic: 'nope', ref: 'u2' }), 'u2', 'not_found');
      const dup = await c.call({ op: 'subscribe', topic: 'orders/1', ref: 's3' });
      assertErrorOp(dup, 's3', 'invalid_parameter');
    });

    test('subscribe with since: retained events after it, then live, next = since', async (t) => {
      const srv = await startServer(t);
      const ids = [];
      for (let i = 1; i <= 5; i++) ids.push((await publishOk(srv.url, 'hist', { i })).id);
      await publishOk(srv.url, 'elsewhere', { x: 1 });
      const c = await client(t, srv, { deflate });
      assert.deepEqual(await c.call({ op: 'subscribe', topic: 'hist', since: ids[1], ref: 'r' }), { op: 'subscribed', topic: 'hist', ref: 'r', next: ids[1] });
      const replayed = await c.events(3);
      assert.deepEqual(replayed.map((e) => e.id), ids.slice(2));
      replayed.forEach((e, k) => assertWsEvent(e, { topic: 'hist', data: { i: k + 3 } }));
      const live = await publishOk(srv.url, 'hist', { i: 6 });
      assert.deepEqual((await c.events(1)).map((e) => e.id), [live.id]);
      await c.noEvent(150);
      // since "0": everything retained; since as a JSON number works too.
      const c2 = await client(t, srv, { deflate });
      assert.equal((await c2.call({ op: 'subscribe', topic: 'hist', since: '0', ref: 1 })).next, '0');
      assert.deepEqual((await c2.events(6)).map((e) => e.data.i), [1, 2, 3, 4, 5, 6]);
      const c3 = await client(t, srv, { deflate });
      assert.equal((await c3.call({ op: 'subscribe', topic: 'hist', since: Number(ids[3]), ref: 1 })).op, 'subscribed');
      assert.deepEqual((await c3.events(2)).map((e) => e.data.i), [5, 6]);
    });

    test('replay then live with no gap and no duplicate while another client publishes', async (t) => {
      const srv = await startServer(t);
      // 600 retained events (more than one replay page), published as three batches.
      for (let b = 0; b < 3; b++) {
        const events = [];
        for (let i = 0; i < 200; i++) events.push({ topic: 'feed', data: { n: b * 200 + i, pad: 'p'.repeat(200) } });
        const r = await request(`${srv.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: { events } });
        assert.equal(r.status, 201, r.text);
      }
      const pub = await client(t, srv, { deflate });
      const sub = await client(t, srv, { deflate });
      sub.send({ op: 'subscribe', topic: 'feed', since: '0', ref: 'replay' });
      // Publish 100 more from another client while the replay runs, without waiting.
      for (let i = 600; i < 700; i++) pub.send({ op: 'publish', topic: 'feed', data: { n: i }, ref: i });
      const acks = [];
      for (let i = 600; i < 700; i++) acks.push(await pub.take((m) => m.ref === i, 10000, `ack ${i}`));
      acks.forEach((a) => assert.equal(a.op, 'ack', JSON.stringify(a)));
      const subscribed = await sub.take((m) => m.op === 'subscribed', 5000);
      assert.equal(subscribed.next, '0');
      const got = await sub.events(700, 10000);
      assert.deepEqual(got.map((e) => e.data.n), [...Array(700).keys()], 'every event once, in order');
      const ids = got.map((e) => BigInt(e.id));
      for (let i = 1; i < ids.length; i++) assert.equal(ids[i], ids[i - 1] + 1n, `ids consecutive at ${i}`);
      assert.deepEqual(acks.map((a) => a.id), got.slice(600).map((e) => e.id), 'acked ids are the delivered ids');
      await sub.noEvent(200);
    });

    test('publish → ack once durable; the event is retrievable by polling right after', async (t) => {
      const srv = await startServer(t);
      const c = await client(t, srv, { deflate });
      const cases = [
        [{ op: 'publish', topic: 'p/1', data: { a: 1 }, ref: 'a' }, 'message', { a: 1 }],
        [{ op: 'publish', topic: 'p/1', type: 'status', data: 'hello', ref: 'b' }, 'status', 'hello'],
        [{ op: 'publish', topic: 'p/1', data: [1, 2, { x: null }], ref: 'c' }, 'message', [1, 2, { x: null }]],
        [{ op: 'publish', topic: 'p/1', data: 3.5, ref: 'd' }, 'message', 3.5],
        [{ op: 'publish', topic: 'p/1', ref: 'e' }, 'message', null],
        [{ op: 'publish', topic: 'p/1', data: 'x'.repeat(50000), ref: 'f' }, 'message', 'x'.repeat(50000)],
      ];
      let prev = 0n;
      for (const [msg, type, data] of cases) {
        const ack = await c.call(msg);
        assert.deepEqual(Object.keys(ack).sort(), ['id', 'op', 'ref'], JSON.stringify(ack));
        assert.equal(ack.op, 'ack');
        assert.equal(ack.ref, msg.ref);
        assert.match(ack.id, ID_RE);
        assert.ok(BigInt(ack.id) > prev);
        prev = BigInt(ack.id);
        const r = await get(`${srv.url}/v1/topics/p/1/events?since=${BigInt(ack.id) - 1n}`);
        assert.equal(r.status, 200);
        assert.equal(r.json.events.length, 1, `event ${ack.id} polled right after its ack`);
        const ev = r.json.events[0];
        assert.equal(ev.id, ack.id);
        assert.equal(ev.type, type);
        assert.deepEqual(ev.data, data);
      }
      // Bad publishes: error ops, nothing stored.
      assertErrorOp(await c.call({ op: 'publish', topic: 'p/*', data: 1, ref: 'x1' }), 'x1', 'invalid_topic');
      assertErrorOp(await c.call({ op: 'publish', topic: 'p/1', type: 'bad type', data: 1, ref: 'x2' }), 'x2', 'invalid_type');
      assertErrorOp(await c.call({ op: 'publish', topic: 'p/1', data: 1, idempotency_key: 'k'.repeat(201), ref: 'x3' }), 'x3', 'invalid_parameter');
      const all = await get(`${srv.url}/v1/topics/p/1/events?since=0`);
      assert.equal(all.json.events.length, cases.length);
    });

    test('a publish repeating an idempotency_key is acked with the original id, stored once', async (t) => {
      const srv = await startServer(t);
      const c = await client(t, srv, { deflate });
      const a1 = await c.call({ op: 'publish', topic: 'idem', data: { v: 1 }, idempotency_key: 'key-1', ref: 1 });
      const a2 = await c.call({ op: 'publish', topic: 'idem', data: { v: 2 }, idempotency_key: 'key-1', ref: 2 });
      assert.deepEqual(a2, { op: 'ack', ref: 2, id: a1.id });
      // The same key over HTTP answers the original too (the key is store-wide).
      const h = await request(`${srv.url}/v1/topics/idem/events`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Idempotency-Key': 'key-1' }, body: { v: 3 } });
      assert.equal(h.status, 200);
      assert.equal(h.json.id, a1.id);
      const a3 = await c.call({ op: 'publish', topic: 'idem', data: { v: 4 }, idempotency_key: 'key-2', ref: 3 });
      assert.notEqual(a3.id, a1.id);
      const r = await get(`${srv.url}/v1/topics/idem/events?since=0`);
      assert.deepEqual(r.json.events.map((e) => e.data), [{ v: 1 }, { v: 4 }]);
    });

    test('invalid JSON and unknown op → error, the connection stays open', async (t) => {
      const srv = await startServer(t);
      const c = await client(t, srv, { deflate });
      for (const bad of ['{not json', '', '{"op":"ping"', '[1,2', 'null x']) {
        c.send(bad);
        assertErrorOp(await c.take(), undefined, 'invalid_json');
      }
      for (const notObject of ['[1,2]', '"ping"', '42', 'null']) {
        c.send(notObject);
        assertErrorOp(await c.take(), undefined, 'invalid_json');
      }
      assertErrorOp(await c.call({ op: 'dance', ref: 'd' }), 'd', 'invalid_parameter');
      assertErrorOp(await c.call({ ref: 'no-op' }), 'no-op', 'invalid_parameter');
      assertErrorOp(await c.call({ op: 42, ref: 'num' }), 'num', 'invalid_parameter');
      assertErrorOp(await c.call({ op: 'PING', ref: 'case' }), 'case', 'invalid_parameter');
      assert.deepEqual(await c.call({ op: 'ping', ref: 'after' }), { op: 'pong', ref: 'after' });
      assert.equal(c.closed, null);
      assert.equal(c.ws.readyState, WebSocket.OPEN);
    });

    test('invalid topic → invalid_topic; bad since → invalid_id', async (t) => {
      const srv = await startServer(t);
      const c = await client(t, srv, { deflate });
      const badTopics = ['', '/a', 'a/', 'a//b', 'sp ace', 'x'.repeat(201), 'a/**/b', 'é', 42, null];
      for (const [i, topic] of badTopics.entries()) {
        assertErrorOp(await c.call({ op: 'subscribe', topic, ref: `t${i}` }), `t${i}`, 'invalid_topic');
      }
      assertErrorOp(await c.call({ op: 'subscribe', ref: 'missing' }), 'missing', 'invalid_topic');
      for (const [i, since] of ['abc', '-1', '1.5', '', ' 1', '99999999999999999999999', { a: 1 }, true, -3].entries()) {
        assertErrorOp(await c.call({ op: 'subscribe', topic: 'ok', since, ref: `s${i}` }), `s${i}`, 'invalid_id');
      }
      // None of those subscribed anything.
      assert.deepEqual(await c.call({ op: 'subscribe', topic: 'ok', ref: 'fine' }), { op: 'subscribed', topic: 'ok', ref: 'fine', next: '0' });
    });

    test('pattern subscriptions: chat/* and chat/** match as SPEC §1 says', async (t) => {
      const srv = await startServer(t);
      const one = await client(t, srv, { deflate });
      const deep = await client(t, srv, { deflate });
      assert.equal((await one.call({ op: 'subscribe', topic: 'chat/*', ref: 1 })).topic, 'chat/*');
      assert.equal((await deep.call({ op: 'subscribe', topic: 'chat/**', ref: 1 })).topic, 'chat/**');
      for (const topic of ['chat/1', 'chat/1/x', 'chat', 'other/1', 'chat/2', 'chatroom/1']) await publishOk(srv.url, topic, { topic });
      const e1 = await one.events(2);
      assert.deepEqual(e1.map((e) => e.topic), ['chat/1', 'chat/2']);
      e1.forEach((e) => assert.deepEqual(e.data, { topic: e.topic }));
      const e2 = await deep.events(3);
      assert.deepEqual(e2.map((e) => e.topic), ['chat/1', 'chat/1/x', 'chat/2']);
      await one.noEvent(150);
      await deep.noEvent(0);
    });

    test('an event matching two subscriptions of one connection arrives once', async (t) => {
      const srv = await startServer(t);
      const c = await client(t, srv, { deflate });
      for (const [i, topic] of ['chat/*', 'chat/room', '**'].entries()) {
        assert.equal((await c.call({ op: 'subscribe', topic, ref: i })).op, 'subscribed');
      }
      const a = await publishOk(srv.url, 'chat/room', { m: 'both' });
      const b = await publishOk(srv.url, 'chat/other', { m: 'pattern' });
      const d = await publishOk(srv.url, 'misc', { m: 'all' });
      const got = await c.events(3);
      assert.deepEqual(got.map((e) => e.id), [a.id, b.id, d.id]);
      await c.noEvent(200);
      // After unsubscribing one of them, the others still deliver once.
      assert.equal((await c.call({ op: 'unsubscribe', topic: 'chat/*', ref: 'u' })).op, 'unsubscribed');
      const e = await publishOk(srv.url, 'chat/room', { m: 'again' });
      assert.deepEqual((await c.events(1)).map((x) => x.id), [e.id]);
      await c.noEvent(150);
    });

    test('events published over HTTP arrive on the WebSocket within 100 ms', async (t) => {
      const srv = await startServer(t);
      const c = await client(t, srv, { deflate });
      await c.call({ op: 'subscribe', topic: 'fast/*', ref: 1 });
      const lat = [];
      for (let i = 0; i < 20; i++) {
        const start = performance.now();
        const pub = publishOk(srv.url, `fast/${i % 3}`, { i, body: 'b'.repeat(i * 100) });
        const [ev] = await c.events(1, 2000);
        lat.push(performance.now() - start);
        const r = await pub;
        assert.equal(ev.id, r.id);
        assert.deepEqual(ev.data, { i, body: 'b'.repeat(i * 100) });
      }
      const worst = Math.max(...lat);
      assert.ok(worst < 100, `slowest delivery ${worst.toFixed(1)} ms (all: ${lat.map((x) => x.toFixed(1)).join(', ')})`);
    });

    test('WebSocket publish reaches SSE-free subscribers on other connections and the publisher', async (t) => {
      const srv = await startServer(t);
      const a = await client(t, srv, { deflate });
      const b = await client(t, srv, { deflate });
      await a.call({ op: 'subscribe', topic: 'room', ref: 1 });
      await b.call({ op: 'subscribe', topic: 'room', ref: 1 });
      const ack = await a.call({ op: 'publish', topic: 'room', data: { from: 'a' }, ref: 'p' });
      for (const c of [a, b]) assertWsEvent((await c.events(1))[0], { topic: 'room', id: ack.id, data: { from: 'a' } });
      // A large event compresses (when negotiated) and arrives intact.
      const big = { text: 'lorem ipsum '.repeat(20000) };
      const ack2 = await b.call({ op: 'publish', topic: 'room', data: big, ref: 'big' });
      for (const c of [a, b]) assertWsEvent((await c.events(1))[0], { topic: 'room', id: ack2.id, data: big });
    });

    test('a binary message → close 1003', async (t) => {
      const srv = await startServer(t);
      const c = await client(t, srv, { deflate });
      c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
      await new Promise((resolve) => (c.closed ? resolve() : c.ws.once('close', resolve)));
      assert.equal(c.closed.code, 1003);
    });
  });
}

test('one connection may hold 100 subscriptions; the 101st is an error', async (t) => {
  const srv = await startServer(t);
  const c = await client(t, srv, {});
  for (let i = 0; i < 100; i++) c.send({ op: 'subscribe', topic: `cap/${i}`, ref: i });
  for (let i = 0; i < 100; i++) assert.equal((await c.take((m) => m.ref === i)).op, 'subscribed');
  assertErrorOp(await c.call({ op: 'subscribe', topic: 'cap/100', ref: 'over' }), 'over', 'invalid_parameter');
  assert.equal((await c.call({ op: 'unsubscribe', topic: 'cap/0', ref: 'u' })).op, 'unsubscribed');
  assert.equal((await c.call({ op: 'subscribe', topic: 'cap/100', ref: 'now' })).op, 'subscribed');
});

test('an event matching a live subscription and a replaying one of the same connection arrives once', async (t) => {
  // x/** is live; x/a is subscribed with since=0 over 8 MB of history while the client is not
  // reading, so its replay is still running when a new x/a event is published.
  const srv = await startServer(t);
  for (let b = 0; b < 10; b++) {
    const events = [];
    for (let i = 0; i < 100; i++) events.push({ topic: 'x/a', data: { n: b * 100 + i, pad: 'p'.repeat(8000) } });
    const r = await request(`${srv.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: { events } });
    assert.equal(r.status, 201, r.text);
  }
  const c = await client(t, srv, {});
  assert.equal((await c.call({ op: 'subscribe', topic: 'x/**', ref: 'live' })).next, '1000');
  c.ws.pause();
  c.send({ op: 'subscribe', topic: 'x/a', since: '0', ref: 'replay' });
  await sleep(300);
  const live = await publishOk(srv.url, 'x/a', { live: true });
  c.ws.resume();
  const got = await c.events(1001, 15000);
  await sleep(300);
  const ids = got.concat(c.queue.filter((m) => m.op === 'event')).map((e) => e.id);
  assert.equal(ids.filter((id) => id === live.id).length, 1, `event ${live.id} delivered ${ids.filter((id) => id === live.id).length} times on one connection`);
  assert.equal(new Set(ids).size, ids.length, 'no event twice');
});

describe('raw mode (GET /v1/topics/{topic}/ws) with the ws client', () => {
  test('text events arrive as their text, JSON events as their JSON text; frames sent are published', async (t) => {
    const srv = await startServer(t);
    const received = [];
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/v1/topics/room/7/ws`);
    t.after(() => ws.terminate());
    ws.on('message', (d, bin) => received.push([d.toString(), bin]));
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    assert.equal(ws.protocol, '');
    await publishOk(srv.url, 'room/7', 'plain text', { contentType: 'text/plain' });
    await publishOk(srv.url, 'room/7', { a: [1, 2], b: 'x' });
    await publishOk(srv.url, 'room/8', 'other topic', { contentType: 'text/plain' });
    ws.send('{"sent":"by client"}');
    ws.send('not json {');
    const deadline = Date.now() + 5000;
    while (received.length < 4 && Date.now() < deadline) await sleep(10);
    await publishOk(srv.url, 'room/7', '"a json string"', { contentType: 'application/json' });
    while (received.length < 5 && Date.now() < deadline) await sleep(10);
    assert.equal(received.length, 5, JSON.stringify(received));
    assert.equal(received[4][0], '"a json string"', 'a JSON string event is sent as its JSON text');
    assert.ok(received.every(([, bin]) => bin === false), 'text frames');
    assert.equal(received[0][0], 'plain text');
    assert.deepEqual(JSON.parse(received[1][0]), { a: [1, 2], b: 'x' });
    assert.deepEqual(JSON.parse(received[2][0]), { sent: 'by client' });
    assert.equal(received[3][0], 'not json {');
    const r = await get(`${srv.url}/v1/topics/room/7/events?since=0`);
    assert.deepEqual(r.json.events.map((e) => [e.type, e.data]), [
      ['message', 'plain text'],
      ['message', { a: [1, 2], b: 'x' }],
      ['message', { sent: 'by client' }],
      ['message', 'not json {'],
      ['message', 'a json string'],
    ]);
  });

  test('?since= replays retained events, then live, without gap or duplicate', async (t) => {
    const srv = await startServer(t);
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await publishOk(srv.url, 'r', `e${i}`, { contentType: 'text/plain' })).id);
    const received = [];
    const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/v1/topics/r/ws?since=${ids[1]}`, { perMessageDeflate: true });
    t.after(() => ws.terminate());
    ws.on('message', (d) => received.push(d.toString()));
    await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
    await publishOk(srv.url, 'r', 'e5', { contentType: 'text/plain' });
    const deadline = Date.now() + 5000;
    while (received.length < 4 && Date.now() < deadline) await sleep(10);
    await sleep(150);
    assert.deepEqual(received, ['e2', 'e3', 'e4', 'e5']);
  });
});

test('clients vanishing mid-publish and mid-replay: the server stays healthy and exits clean', async (t) => {
  const srv = await startServer(t);
  const events = [];
  for (let i = 0; i < 500; i++) events.push({ topic: 'gone/a', data: { i, pad: 'p'.repeat(1000) } });
  const r = await request(`${srv.url}/v1/events`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: { events } });
  assert.equal(r.status, 201, r.text);
  const clients = await Promise.all([...Array(30).keys()].map(() => Client.open(srv, { deflate: true })));
  clients.forEach((c, i) => {
    c.send({ op: 'subscribe', topic: 'gone/*', since: '0', ref: i });
    for (let k = 0; k < 5; k++) c.send({ op: 'publish', topic: `gone/${i}`, data: { k, pad: 'q'.repeat(3000) }, ref: k, idempotency_key: `g-${i}-${k}` });
  });
  await sleep(5);
  clients.forEach((c) => c.close());
  await sleep(300);
  const c = await client(t, srv, { deflate: true });
  assert.deepEqual(await c.call({ op: 'ping', ref: 'ok' }), { op: 'pong', ref: 'ok' });
  assert.equal((await get(`${srv.url}/healthz`)).status, 200);
  c.close();
  await srv.stop(); // exit 0, no sanitizer report
});
