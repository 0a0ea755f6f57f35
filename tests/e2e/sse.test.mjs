// SPEC §5: Server-Sent Events.
import assert from 'node:assert/strict';
import net from 'node:net';
import { EventSource } from 'eventsource';
import { startServer, test } from './lib/server.mjs';
import { openSse, publish, publishOk, assertError, assertEpoch, sleep, waitFor } from './lib/http.mjs';

/** The frame that starts with `id: <id>\n`, up to and including its blank line. */
function frameOf(raw, id) {
  const start = raw.indexOf(`\nid: ${id}\n`);
  assert.ok(start >= 0, `no frame with id ${id} in ${JSON.stringify(raw.slice(-500))}`);
  const end = raw.indexOf('\n\n', start + 1);
  assert.ok(end >= 0);
  return raw.slice(start + 1, end + 2);
}

async function stream(t, url, headers) {
  const s = await openSse(url, { headers });
  t.after(() => s.close());
  return s;
}

/** Waits until the opening (comment + retry) arrived, so the subscription is registered. */
async function opened(s) {
  await s.waitItem((x) => x.kind === 'retry', 5000, 'retry: 3000');
}

test('SSE headers, opening comment and retry: 3000', async (t) => {
  const srv = await startServer(t);
  const s = await stream(t, `${srv.url}/v1/topics/news/stream`);
  assert.equal(s.status, 200);
  assert.equal(s.headers['content-type'], 'text/event-stream');
  assert.equal(s.headers['cache-control'], 'no-cache');
  assert.equal(s.headers['x-accel-buffering'], 'no');
  assert.equal(s.headers['content-length'], undefined, 'a stream has no Content-Length');
  assertEpoch(s);
  await opened(s);
  const raw = s.raw();
  assert.match(raw, /^:[^\n]*\n(?:\n|:[^\n]*\n)*retry: 3000\n/, `opening: ${JSON.stringify(raw)}`);
  assert.equal(s.items[0].kind, 'comment');
  assert.equal(s.events().length, 0, 'without a resume id the stream is live only');
});

test('SSE framing: id, event omitted for message, data lines, LF only', async (t) => {
  const srv = await startServer(t);
  await publishOk(srv.url, 'f', { before: true }); // 1: not sent (live only)
  const s = await stream(t, `${srv.url}/v1/topics/f/stream`);
  await opened(s);
  const pubs = [
    [{ a: 1, b: [true, null] }, {}],
    ['{"x":"y"}', { type: 'status' }],
    ['l1\rl2\nl3\r\nl4', { contentType: 'text/plain' }],
    ['a\n\nb', { contentType: 'text/plain' }],
    ['end\n', { contentType: 'text/plain' }],
    ['', { contentType: 'text/plain' }],
    ['"a json string"', { contentType: 'application/json', type: 'note' }],
    ['plain text with: colon', { contentType: 'text/plain', type: 'message' }],
    ['{"s":"multi\\nline"}', {}],
  ];
  const recs = [];
  for (const [data, opts] of pubs) recs.push(await publishOk(srv.url, 'f', data, opts));
  const evs = await s.waitEvents(pubs.length);
  const raw = s.raw();
  assert.ok(!raw.includes('\r'), 'herald writes LF line ends only');
  assert.deepEqual(evs.map((e) => e.id), recs.map((r) => r.id));
  assert.equal(recs[0].id, '2');
  assert.equal(frameOf(raw, 2), 'id: 2\ndata: {"a":1,"b":[true,null]}\n\n');
  assert.equal(frameOf(raw, 3), 'id: 3\nevent: status\ndata: {"x":"y"}\n\n');
  assert.equal(frameOf(raw, 4), 'id: 4\ndata: l1\ndata: l2\ndata: l3\ndata: l4\n\n');
  assert.deepEqual(evs[3].dataLines, ['a', '', 'b']);
  assert.equal(evs[3].event, undefined);
  assert.deepEqual(evs[4].dataLines, ['end', '']);
  assert.deepEqual(evs[5].dataLines, [''], 'empty text still has one data line, so EventSource dispatches it');
  assert.equal(frameOf(raw, 8), 'id: 8\nevent: note\ndata: "a json string"\n\n');
  assert.equal(frameOf(raw, 9), 'id: 9\ndata: plain text with: colon\n\n');
  assert.equal(frameOf(raw, 10), 'id: 10\ndata: {"s":"multi\\nline"}\n\n');
  assert.deepEqual(JSON.parse(evs[8].data), { s: 'multi\nline' });
});

test('--sse-heartbeat 1 sends ": ping" comments', async (t) => {
  const srv = await startServer(t, { args: ['--sse-heartbeat', '1'] });
  const s = await stream(t, `${srv.url}/v1/topics/hb/stream`);
  await opened(s);
  const t0 = Date.now();
  await s.waitItem((x) => x.kind === 'comment' && x.text === 'ping', 3000, ': ping');
  assert.ok(Date.now() - t0 < 2500);
  assert.ok(s.raw().includes('\n: ping\n'), JSON.stringify(s.raw()));
  const pings = () => s.items.filter((x) => x.kind === 'comment' && x.text === 'ping').length;
  await waitFor(() => pings() >= 2, { timeout: 3000, message: 'a second ping' });
  // events and pings interleave on event boundaries
  const rec = await publishOk(srv.url, 'hb', 'x', { contentType: 'text/plain' });
  const [ev] = await s.waitEvents(1);
  assert.equal(ev.id, rec.id);
  assert.equal(ev.data, 'x');
});

test('resume with Last-Event-ID, ?lastEventId=, ?since= (the header wins), then live', async (t) => {
  const srv = await startServer(t);
  for (let i = 1; i <= 5; i++) await publishOk(srv.url, 'r', { i });
  const check = async (suffix, headers, expectFirst) => {
    const s = await stream(t, `${srv.url}/v1/topics/r/stream${suffix}`, headers);
    assert.equal(s.status, 200, `${suffix} ${JSON.stringify(headers)}: ${s.text}`);
    const want = [];
    for (let i = expectFirst; i <= 5; i++) want.push(String(i));
    const evs = await s.waitEvents(want.length);
    assert.deepEqual(evs.map((e) => e.id), want, `${suffix} ${JSON.stringify(headers)}`);
    if (want.length) assert.deepEqual(JSON.parse(evs[0].data), { i: expectFirst });
    return s;
  };
  const a = await check('', { 'Last-Event-ID': '2' }, 3);
  const b = await check('?lastEventId=3', {}, 4);
  const c = await check('?since=1', {}, 2);
  const d = await check('?lastEventId=1', { 'Last-Event-ID': '4' }, 5);
  const e = await check('?since=1', { 'Last-Event-ID': '3' }, 4);
  const f = await check('?since=0', {}, 1);
  const rec = await publishOk(srv.url, 'r', { i: 6 });
  for (const [s, n] of [[a, 4], [b, 3], [c, 5], [d, 2], [e, 3], [f, 6]]) {
    const evs = await s.waitEvents(n);
    assert.equal(evs.at(-1).id, rec.id, 'then the live stream');
    assert.equal(new Set(s.events().map((x) => x.id)).size, s.events().length, 'no duplicate');
  }
  // Caught up: nothing replayed, live continues.
  const g = await check('', { 'Last-Event-ID': '6' }, 7);
  await opened(g);
  assert.equal(g.events().length, 0);
  const rec7 = await publishOk(srv.url, 'r', { i: 7 });
  assert.equal((await g.waitEvents(1))[0].id, rec7.id);
});

test('malformed resume id → 400 invalid_id', async (t) => {
  const srv = await startServer(t);
  await publishOk(srv.url, 'm', 1);
  const bad = ['abc', '-1', '1.5', '0x10', '1 2', '99999999999999999999999999'];
  for (const id of bad) {
    const h = await openSse(`${srv.url}/v1/topics/m/stream`, { headers: { 'Last-Event-ID': id } });
    assertError(h, 400, 'invalid_id', { context: `Last-Event-ID ${id}` });
    assertEpoch(h);
    for (const q of ['lastEventId', 'since']) {
      const r = await openSse(`${srv.url}/v1/topics/m/stream?${q}=${encodeURIComponent(id)}`);
      assertError(r, 400, 'invalid_id', { context: `${q}=${id}` });
    }
  }
  const ok = await stream(t, `${srv.url}/v1/topics/m/stream?since=0`);
  assert.equal(ok.status, 200);
  assert.equal((await ok.waitEvents(1))[0].id, '1');
});

test('herald.reset: history_truncated with the oldest id, unknown_id with the head', async (t) => {
  const srv = await startServer(t, { args: ['--history-size', '3'] });
  for (let i = 1; i <= 6; i++) await publishOk(srv.url, 'z', { i }); // retained 4..6
  const s = await stream(t, `${srv.url}/v1/topics/z/stream`, { 'Last-Event-ID': '1' });
  const evs = await s.waitEvents(4);
  assert.equal(evs[0].event, 'herald.reset');
  assert.equal(evs[0].data, '{"reason":"history_truncated","oldest":"4"}');
  assert.deepEqual(evs.slice(1).map((e) => e.id), ['4', '5', '6']);
  assert.deepEqual(evs.slice(1).map((e) => e.event), [undefined, undefined, undefined]);

  const q = await stream(t, `${srv.url}/v1/topics/z/stream?since=2`);
  const qe = await q.waitEvents(4);
  assert.equal(qe[0].data, '{"reason":"history_truncated","oldest":"4"}');

  const noGap = await stream(t, `${srv.url}/v1/topics/z/stream`, { 'Last-Event-ID': '3' });
  const ng = await noGap.waitEvents(3);
  assert.deepEqual(ng.map((e) => e.id), ['4', '5', '6'], 'nothing after 3 left history: no reset');

  const u = await stream(t, `${srv.url}/v1/topics/z/stream`, { 'Last-Event-ID': '1000' });
  const [reset] = await u.waitEvents(1);
  assert.equal(reset.event, 'herald.reset');
  assert.equal(reset.data, '{"reason":"unknown_id","head":"6"}');
  const rec = await publishOk(srv.url, 'z', { i: 7 });
  const ue = await u.waitEvents(2);
  assert.equal(ue[1].id, rec.id, 'then the live stream');
  assert.equal(u.events().length, 2);

  const all = await s.waitEvents(5);
  assert.equal(all[4].id, rec.id);
  assert.equal((await noGap.waitEvents(4))[3].id, rec.id);
});

test('multi-topic stream: GET /v1/stream?topic=a&topic=b/*', async (t) => {
  const srv = await startServer(t);
  const s = await stream(t, `${srv.url}/v1/stream?topic=a&topic=b/*`);
  assert.equal(s.status, 200);
  assert.equal(s.headers['content-type'], 'text/event-stream');
  await opened(s);
  const want = [];
  for (const topic of ['a', 'b/1', 'b/1/x', 'c', 'b', 'b/2', 'a/a', 'a']) {
    const rec = await publishOk(srv.url, topic, { topic });
    if (['a', 'b/1', 'b/2'].includes(topic)) want.push(rec.id);
  }
  const evs = await s.waitEvents(want.length);
  assert.deepEqual(evs.map((e) => e.id), want);
  assert.deepEqual(evs.map((e) => JSON.parse(e.data).topic), ['a', 'b/1', 'b/2', 'a']);
  await sleep(100);
  assert.equal(s.events().length, want.length, 'nothing else');

  // Resume across the topics, in id order.
  const r = await stream(t, `${srv.url}/v1/stream?topic=a&topic=b/*&since=0`);
  const re = await r.waitEvents(want.length);
  assert.deepEqual(re.map((e) => e.id), want);
  const rr = await stream(t, `${srv.url}/v1/stream?topic=**`, { 'Last-Event-ID': want[1] });
  const all = await rr.waitEvents(8 - Number(want[1]));
  assert.deepEqual(all.map((e) => e.id), Array.from({ length: 8 - Number(want[1]) }, (_, i) => String(Number(want[1]) + 1 + i)));

  for (const bad of ['/v1/stream', '/v1/stream?topic=', '/v1/stream?topic=a//b', '/v1/topics/a%20b/stream', '/v1/stream?topic=a/**/b']) {
    const b = await openSse(`${srv.url}${bad}`);
    assertError(b, 400, bad === '/v1/stream' ? ['invalid_topic', 'invalid_parameter'] : 'invalid_topic', { context: bad });
  }
});

test('an event published to a stream subscriber arrives promptly (flushed per event)', async (t) => {
  const srv = await startServer(t);
  const s = await stream(t, `${srv.url}/v1/topics/fast/stream`);
  await opened(s);
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    const rec = await publishOk(srv.url, 'fast', { i });
    const evs = await s.waitEvents(i + 1, 2000);
    assert.equal(evs[i].id, rec.id);
    assert.ok(Date.now() - t0 < 500, `delivered in ${Date.now() - t0} ms`);
  }
});

test('a 1 MiB event (the largest body) reaches live and resuming SSE subscribers whole', async (t) => {
  const srv = await startServer(t);
  const live = await stream(t, `${srv.url}/v1/topics/huge/stream`);
  await opened(live);
  const body = 'h'.repeat(1024 * 1024);
  const rec = await publishOk(srv.url, 'huge', body, { contentType: 'text/plain' });
  const after = await publishOk(srv.url, 'huge', 'small', { contentType: 'text/plain' });
  const evs = await live.waitEvents(2, 10000);
  assert.equal(evs[0].id, rec.id);
  assert.equal(evs[0].data.length, body.length);
  assert.equal(evs[1].id, after.id);
  const resumed = await stream(t, `${srv.url}/v1/topics/huge/stream?since=0`);
  assert.equal(resumed.status, 200);
  const rev = await resumed.waitEvents(2, 10000);
  assert.equal(rev[0].data.length, body.length);
  assert.equal(rev[1].data, 'small');
});

/** A TCP proxy whose connections can be cut at will. */
async function tcpProxy(t, targetPort) {
  const pairs = new Set();
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted += 1;
    const up = net.connect({ port: targetPort, host: '127.0.0.1' });
    const pair = { client, up };
    pairs.add(pair);
    client.pipe(up);
    up.pipe(client);
    const drop = () => {
      client.destroy();
      up.destroy();
      pairs.delete(pair);
    };
    client.on('error', drop);
    up.on('error', drop);
    client.on('close', drop);
    up.on('close', drop);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const p of pairs) {
      p.client.destroy();
      p.up.destroy();
    }
    server.close();
  });
  return {
    port: server.address().port,
    get accepted() {
      return accepted;
    },
    cut() {
      for (const p of [...pairs]) {
        p.client.destroy();
        p.up.destroy();
      }
      pairs.clear();
    },
  };
}

/**
 * Publishes {n} to topic every millisecond (at most `inFlight` outstanding) until stop();
 * returns the ids of every acknowledged publish.
 */
function publisher(base, topic, { inFlight = 16 } = {}) {
  let n = 0;
  let outstanding = 0;
  let running = true;
  const ids = [];
  const errors = [];
  const pending = new Set();
  const timer = setInterval(() => {
    if (!running || outstanding >= inFlight) return;
    outstanding += 1;
    const i = n++;
    const p = fetch(`${base}/v1/topics/${topic}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ n: i }),
    })
      .then(async (r) => {
        const body = await r.json();
        if (r.status !== 201) errors.push(`${r.status} ${JSON.stringify(body)}`);
        else ids.push(body.id);
      })
      .catch((e) => errors.push(String(e)))
      .finally(() => {
        outstanding -= 1;
        pending.delete(p);
      });
    pending.add(p);
  }, 1);
  return {
    ids,
    errors,
    get count() {
      return ids.length;
    },
    async stop() {
      running = false;
      clearInterval(timer);
      await Promise.all([...pending]);
      return ids.map(Number).sort((a, b) => a - b).map(String);
    },
  };
}

test('npm eventsource resumes across a forced disconnect: every id exactly once, in order', { timeout: 90000 }, async (t) => {
  const srv = await startServer(t, { args: ['--history-size', '100000'] });
  const proxy = await tcpProxy(t, srv.port);
  const received = [];
  let opens = 0;
  let errorsSeen = 0;
  const es = new EventSource(`http://127.0.0.1:${proxy.port}/v1/topics/flood/stream?since=0`);
  t.after(() => es.close());
  es.addEventListener('open', () => {
    opens += 1;
  });
  es.addEventListener('error', () => {
    errorsSeen += 1;
  });
  es.addEventListener('message', (ev) => received.push(ev.lastEventId));
  es.addEventListener('herald.reset', (ev) => received.push(`reset:${ev.data}`));
  await waitFor(() => opens === 1, { timeout: 5000, message: 'EventSource open' });

  const pub = publisher(srv.url, 'flood');
  await waitFor(() => pub.count >= 300 && received.length >= 100, { timeout: 15000, message: 'events flowing' });
  proxy.cut();
  const cutAt = received.length;
  const publishedAtCut = pub.count;
  await waitFor(() => opens === 2, { timeout: 10000, message: 'EventSource reconnected' });
  const publishedWhileAway = pub.count - publishedAtCut;
  assert.ok(publishedWhileAway >= 100, `published ${publishedWhileAway} while the client was away`);
  assert.ok(errorsSeen >= 1, 'the client saw the disconnect');
  await waitFor(() => received.length > cutAt + 200, { timeout: 15000, message: 'events after the reconnect' });
  const published = await pub.stop();
  assert.deepEqual(pub.errors, []);
  const last = published.at(-1);
  await waitFor(() => received.includes(last), { timeout: 20000, message: `the last id ${last} (have ${received.length}/${published.length})` });
  await sleep(100);
  es.close();
  assert.ok(proxy.accepted >= 2);
  // ids are strictly increasing and exactly the acknowledged ones
  for (let i = 1; i < received.length; i++) {
    assert.ok(Number(received[i]) > Number(received[i - 1]), `order/duplicate at ${i}: ${received[i - 1]} then ${received[i]}`);
  }
  assert.deepEqual(received, published);
});
