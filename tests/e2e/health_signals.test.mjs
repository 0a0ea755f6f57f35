// SPEC §10: /healthz, /readyz, and a clean shutdown on SIGTERM / SIGINT.
import assert from 'node:assert/strict';
import { startServer, test } from './lib/server.mjs';
import { get, publishOk, openSse, assertEpoch, RawConn, sleep } from './lib/http.mjs';

test('GET /healthz and /readyz → 200 with Herald-Epoch', async (t) => {
  const srv = await startServer(t);
  const h = await get(`${srv.url}/healthz`);
  assert.equal(h.status, 200, h.text);
  assertEpoch(h);
  const r = await get(`${srv.url}/readyz`);
  assert.equal(r.status, 200, r.text);
  assertEpoch(r, h.headers['herald-epoch']);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  test(`${signal} with an SSE stream and a long poll open: poll answered, stream ended, exit 0`, async (t) => {
    const srv = await startServer(t);
    await publishOk(srv.url, 'sig', 'one'); // 1
    const s = await openSse(`${srv.url}/v1/topics/sig/stream`);
    t.after(() => s.close());
    await s.waitItem((x) => x.kind === 'retry');
    const rec = await publishOk(srv.url, 'sig', 'two'); // 2
    await s.waitEvents(1);
    const pollStarted = Date.now();
    const longPoll = get(`${srv.url}/v1/topics/sig/events?since=${rec.id}&wait=30`);
    const longPoll304 = get(`${srv.url}/v1/topics/sig/events?since=${rec.id}&wait=30`, { headers: { 'If-None-Match': `"${rec.id}"` } });
    // An idle keep-alive connection must not hold the shutdown up.
    const idle = await RawConn.connect(srv.port);
    t.after(() => idle.destroy());
    await idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await idle.readResponse()).status, 200);
    await sleep(300); // let the long polls register
    const t0 = Date.now();
    const stopped = srv.stop({ signal, timeout: 12000 });
    const r = await longPoll;
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { events: [], next: rec.id, truncated: false }, 'answered as if it had timed out');
    assert.ok(Date.now() - pollStarted < 10000);
    const r304 = await longPoll304;
    assert.equal(r304.status, 304);
    assert.equal(await s.waitEnded(10000), true, 'the stream ends');
    assert.equal(s.parser.cur, null, 'the stream ends on an event boundary');
    assert.equal(s.parser.pending, '');
    assert.deepEqual(s.events().map((e) => e.id), [rec.id]);
    const info = await stopped; // throws unless exit code 0 and no sanitizer report
    assert.deepEqual(info, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 10000, `shut down in ${Date.now() - t0} ms`);
    assert.equal(await idle.waitClosed(1000), true);
    // Data flushed: a restart on the same store has both events.
    await srv.restart();
    const all = await get(`${srv.url}/v1/topics/sig/events?since=0`);
    assert.deepEqual(all.json.events.map((e) => e.data), ['one', 'two']);
  });
}

test('SIGTERM with no clients exits 0 promptly', async (t) => {
  const srv = await startServer(t);
  const t0 = Date.now();
  const info = await srv.stop();
  assert.deepEqual(info, { code: 0, signal: null });
  assert.ok(Date.now() - t0 < 3000, `exited in ${Date.now() - t0} ms`);
});

test('after SIGTERM new connections are refused or answered 503', async (t) => {
  const srv = await startServer(t);
  const s = await openSse(`${srv.url}/v1/topics/x/stream`);
  t.after(() => s.close());
  await s.waitItem((x) => x.kind === 'retry');
  const stopped = srv.stop();
  await s.waitEnded(10000);
  const r = await get(`${srv.url}/healthz`, { timeout: 2000 }).catch((e) => e);
  if (!(r instanceof Error)) assert.equal(r.status, 503, `a request during shutdown: ${r.status}`);
  await stopped;
});
