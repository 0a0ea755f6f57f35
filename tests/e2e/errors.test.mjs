// SPEC §2: every bad input gets a JSON error, never crashes the server, never affects other
// clients. Malformed HTTP is sent on raw sockets (fetch would refuse to send it).
import assert from 'node:assert/strict';
import { startServer, test } from './lib/server.mjs';
import {
  request, get, publishOk, openSse, assertError, assertEpoch, RawConn, rawExchange, sleep,
} from './lib/http.mjs';

/** The server still serves a normal client: a publish and a poll on fresh connections. */
async function assertHealthy(srv, what) {
  const h = await get(`${srv.url}/healthz`);
  assert.equal(h.status, 200, `healthz after ${what}`);
  const rec = await publishOk(srv.url, 'health/check', { after: what });
  const r = await get(`${srv.url}/v1/topics/health/check/events?since=${Number(rec.id) - 1}`);
  assert.equal(r.status, 200);
  assert.equal(r.json.events[0].id, rec.id, `poll after ${what}`);
  return rec;
}

/** Parses the raw response's JSON error like assertError does for request(). */
function assertRawError(res, status, code, context) {
  assertError({ ...res, headers: res.headers }, status, code, { context });
  assertEpoch(res);
}

test('404 not_found JSON for unknown paths, and unknown verbs under a topic', async (t) => {
  const srv = await startServer(t);
  for (const path of ['/', '/nope', '/v1', '/v1/', '/v1/topics', '/v1/topics/a', '/v1/topics/a/b/unknownverb', '/v2/events', '/healthz/x', '/v1/eventsx']) {
    const r = await get(`${srv.url}${path}`);
    assertError(r, 404, 'not_found', { context: path });
    assertEpoch(r);
  }
  await assertHealthy(srv, '404s');
});

test('405 method_not_allowed with an Allow header', async (t) => {
  const srv = await startServer(t);
  const cases = [
    ['DELETE', '/v1/topics/a/events', ['GET', 'POST']],
    ['PUT', '/v1/topics/a/b/events', ['GET', 'POST']],
    ['PATCH', '/v1/events', ['GET', 'POST']],
    ['POST', '/v1/topics/a/stream', ['GET']],
    ['PUT', '/v1/stream?topic=a', ['GET']],
    ['POST', '/healthz', ['GET']],
    ['DELETE', '/readyz', ['GET']],
  ];
  for (const [method, path, mustAllow] of cases) {
    const r = await request(`${srv.url}${path}`, { method, body: method === 'DELETE' ? undefined : '' });
    assertError(r, 405, 'method_not_allowed', { context: `${method} ${path}` });
    assertEpoch(r);
    const allow = (r.headers.allow || '').split(',').map((s) => s.trim()).filter(Boolean);
    for (const m of mustAllow) assert.ok(allow.includes(m), `Allow of ${path} has ${m}: ${r.headers.allow}`);
    assert.ok(!allow.includes(method), `Allow of ${path} does not list ${method}: ${r.headers.allow}`);
  }
  await assertHealthy(srv, '405s');
});

test('malformed HTTP → 400 bad_request and the connection is closed', async (t) => {
  const srv = await startServer(t);
  const sse = await openSse(`${srv.url}/v1/topics/bystander/stream`);
  t.after(() => sse.close());
  const bad = [
    ['garbage', 'GARBAGE\r\n\r\n'],
    ['no version', 'GET /healthz\r\n\r\n'],
    ['header without colon', 'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'],
    ['space before colon', 'GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n'],
    ['NUL in a header value', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n'],
    ['control character in the target', 'GET /heal\x01thz HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['space in the target', 'GET /a b HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['bad version', 'GET /healthz HTTP/1.x\r\nHost: x\r\n\r\n'],
    ['obsolete line folding', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n'],
    ['empty header name', 'GET /healthz HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n'],
    ['bad chunk size', 'POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n'],
    ['chunk without CRLF', 'POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n'],
    ['negative Content-Length', 'POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n'],
    ['non-numeric Content-Length', 'POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\nx'],
    ['overflowing Content-Length', 'POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999999\r\n\r\n'],
    ['unknown transfer coding', 'POST /v1/topics/a/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n'],
    ['HTTP/1.1 without Host', 'GET /healthz HTTP/1.1\r\n\r\n'],
  ];
  for (const [what, bytes] of bad) {
    const r = await rawExchange(srv.port, bytes);
    if (what === 'unknown transfer coding') {
      assert.ok([400, 501].includes(r.status), `${what}: ${r.status}`);
    } else if (what === 'bad version') {
      assert.ok([400, 505].includes(r.status), `${what}: ${r.status}`);
    } else {
      assertRawError(r, 400, 'bad_request', what);
    }
    assert.equal(r.closed, true, `${what}: the connection is closed after the error`);
  }
  await assertHealthy(srv, 'malformed requests');
  const rec = await publishOk(srv.url, 'bystander', 'still here');
  const [ev] = await sse.waitEvents(1);
  assert.equal(ev.id, rec.id, 'an open stream is unaffected');
  assert.deepEqual((await get(`${srv.url}/v1/topics/a/events?since=0`)).json.events, [], 'nothing stored by a malformed request');
});

test('request smuggling: Content-Length with Transfer-Encoding, or two different Content-Lengths → 400 + close', async (t) => {
  const srv = await startServer(t);
  const cases = [
    ['CL + TE', 'POST /v1/topics/smug/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n0\r\n\r\n'],
    ['TE + CL', 'POST /v1/topics/smug/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\n3\r\nabc\r\n0\r\n\r\n'],
    ['two Content-Lengths', 'POST /v1/topics/smug/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\nhello!'],
    ['a Content-Length list', 'POST /v1/topics/smug/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\nContent-Type: text/plain\r\n\r\nhello!'],
    ['chunked not last', 'POST /v1/topics/smug/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\nContent-Type: text/plain\r\n\r\n3\r\nabc\r\n0\r\n\r\n'],
  ];
  for (const [what, bytes] of cases) {
    // A second, smuggled request follows on the same connection: it must never be answered.
    const r = await rawExchange(srv.port, `${bytes}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`);
    if (what === 'chunked not last') assert.ok([400, 501].includes(r.status), `${what}: ${r.status}`);
    else assertRawError(r, 400, 'bad_request', what);
    assert.equal(r.closed, true, `${what}: closed`);
  }
  assert.deepEqual((await get(`${srv.url}/v1/topics/smug/events?since=0`)).json.events, [], 'nothing stored');
  await assertHealthy(srv, 'smuggling attempts');
});

test('well-formed raw requests: chunked body, pipelining, keep-alive, Expect: 100-continue', async (t) => {
  const srv = await startServer(t);
  const c = await RawConn.connect(srv.port);
  t.after(() => c.destroy());
  await c.write(
    'POST /v1/topics/raw/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n' +
      'GET /v1/topics/raw/events?since=0 HTTP/1.1\r\nHost: x\r\n\r\n' +
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n',
  );
  const a = await c.readResponse();
  assert.equal(a.status, 201, a.text);
  const b = await c.readResponse();
  assert.equal(b.status, 200);
  assert.deepEqual(b.json.events.map((e) => e.data), ['hello world']);
  const h = await c.readResponse();
  assert.equal(h.status, 200);
  assert.equal(c.closed, false, 'keep-alive');
  // Expect: 100-continue
  await c.write('POST /v1/topics/raw/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n');
  const cont = await c.readResponse();
  assert.equal(cont.status, 100);
  await c.write('{"a":1}');
  const done = await c.readResponse();
  assert.equal(done.status, 201, done.text);
  // split into single bytes
  const req = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
  for (const ch of req) await c.write(ch);
  assert.equal((await c.readResponse()).status, 200);
  // HTTP/1.0 closes after the response
  const old = await rawExchange(srv.port, 'GET /healthz HTTP/1.0\r\n\r\n');
  assert.equal(old.status, 200);
  assert.equal(old.closed, true);
  // Connection: close is honoured
  const cl = await rawExchange(srv.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.equal(cl.status, 200);
  assert.equal(cl.closed, true);
});

test('headers over 16 KiB → 431 headers_too_large', async (t) => {
  const srv = await startServer(t);
  const ok = await rawExchange(srv.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(8 * 1024)}\r\nConnection: close\r\n\r\n`);
  assert.equal(ok.status, 200, '8 KiB of headers is fine');
  const big = await rawExchange(srv.port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\n\r\n`);
  assertRawError(big, 431, 'headers_too_large', '17 KiB header');
  assert.equal(big.closed, true);
  const many = Array.from({ length: 700 }, (_, i) => `X-H${i}: ${'v'.repeat(20)}\r\n`).join('');
  const m = await rawExchange(srv.port, `GET /healthz HTTP/1.1\r\nHost: x\r\n${many}\r\n`);
  assertRawError(m, 431, 'headers_too_large', 'many headers');
  const line = await rawExchange(srv.port, `GET /healthz?${'q'.repeat(20 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`);
  assert.ok([414, 431].includes(line.status), `long request line: ${line.status}`);
  // Never-ending headers without a blank line: cut off at the limit, not buffered forever.
  const c = await RawConn.connect(srv.port);
  t.after(() => c.destroy());
  await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
  for (let i = 0; i < 40 && !c.closed; i++) await c.write(`X-${i}: ${'z'.repeat(1000)}\r\n`);
  const r = await c.readResponse();
  assert.equal(r.status, 431);
  assert.equal(await c.waitClosed(3000), true);
  await assertHealthy(srv, '431s');
});

test('body over 1 MiB → 413 payload_too_large (Content-Length and chunked); 1 MiB exactly is accepted', async (t) => {
  const srv = await startServer(t);
  const MiB = 1024 * 1024;
  // Announced too large: answered from the headers, without reading the body.
  const early = await rawExchange(srv.port, `POST /v1/topics/big/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${MiB + 1}\r\n\r\n`);
  assertRawError(early, 413, 'payload_too_large', 'Content-Length 1 MiB + 1');
  assert.equal(early.closed, true);
  // Sent in full through node:http.
  const full = await request(`${srv.url}/v1/topics/big/events`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: Buffer.alloc(MiB + 1, 'a') }).catch((e) => e);
  if (!(full instanceof Error)) assertError(full, 413, 'payload_too_large', { context: 'full body' });
  // Chunked, no length announced.
  const c = await RawConn.connect(srv.port);
  t.after(() => c.destroy());
  await c.write('POST /v1/topics/big/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n');
  const chunk = 'b'.repeat(64 * 1024);
  for (let i = 0; i < 17 && !c.closed; i++) await c.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
  await c.write('0\r\n\r\n');
  const ch = await c.readResponse();
  assertError(ch, 413, 'payload_too_large', { context: 'chunked' });
  assert.equal(await c.waitClosed(3000), true);
  const none = await get(`${srv.url}/v1/topics/big/events?since=0`);
  assert.deepEqual(none.json.events, [], 'nothing stored by the rejected bodies');
  // Exactly 1 MiB is fine (its delivery is tested in poll and sse tests).
  const exact = await request(`${srv.url}/v1/topics/big/events`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: Buffer.alloc(MiB, 'c') });
  assert.equal(exact.status, 201, exact.text);
  assert.equal(exact.json.id, '1');
  await assertHealthy(srv, '413s');
});

test('--max-connections exceeded → 503 unavailable; a freed slot is usable again', async (t) => {
  const srv = await startServer(t, { args: ['--max-connections', '4'] });
  const conns = [];
  t.after(() => conns.forEach((c) => c.destroy()));
  for (let i = 0; i < 4; i++) {
    const c = await RawConn.connect(srv.port);
    conns.push(c);
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await c.readResponse()).status, 200, `connection ${i + 1} of 4`);
  }
  const extra = await RawConn.connect(srv.port).catch((e) => e);
  if (!(extra instanceof Error)) {
    conns.push(extra);
    await extra.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const r = await extra.readResponse();
    assertRawError(r, 503, 'unavailable', '5th connection');
    assert.equal(await extra.waitClosed(3000), true);
  }
  conns[0].destroy();
  await sleep(100);
  const again = await get(`${srv.url}/healthz`);
  assert.equal(again.status, 200, 'a slot freed by a closed connection is usable');
  for (const c of conns.slice(1, 4)) {
    await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await c.readResponse()).status, 200, 'existing connections are unaffected');
  }
});

test('--header-timeout 1 closes a slowloris connection; others are served meanwhile', async (t) => {
  const srv = await startServer(t, { args: ['--header-timeout', '1'] });
  const slow = await RawConn.connect(srv.port);
  t.after(() => slow.destroy());
  const started = Date.now();
  const head = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ';
  await slow.write(head);
  let trickled = 0;
  while (!slow.closed && Date.now() - started < 4000) {
    await slow.write('a');
    trickled += 1;
    await sleep(100);
    if (trickled === 3) {
      const other = await get(`${srv.url}/healthz`);
      assert.equal(other.status, 200, 'another client is served while the slow one trickles');
    }
  }
  assert.equal(slow.closed, true, 'the slow connection was closed');
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 900 && elapsed < 3000, `closed after ${elapsed} ms`);
  const text = slow.all.toString('latin1');
  if (text.length) assert.match(text, /^HTTP\/1\.1 (408|400) /, `at most a 408/400 before closing: ${text}`);
  // A connection that sends nothing at all is closed too.
  const idle = await RawConn.connect(srv.port);
  t.after(() => idle.destroy());
  assert.equal(await idle.waitClosed(3000), true, 'a silent connection is closed by the header timeout');
  // A body that is slow does not count against the header timeout only if the headers were on time;
  // a normal request still works.
  await assertHealthy(srv, 'slowloris');
});

test('--idle-timeout closes an idle keep-alive connection', async (t) => {
  const srv = await startServer(t, { args: ['--idle-timeout', '1'] });
  const c = await RawConn.connect(srv.port);
  t.after(() => c.destroy());
  await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal((await c.readResponse()).status, 200);
  const t0 = Date.now();
  assert.equal(await c.waitClosed(4000), true);
  assert.ok(Date.now() - t0 >= 800, `closed after ${Date.now() - t0} ms`);
});

test('a client that disconnects mid-request or mid-response does not hurt the server', async (t) => {
  const srv = await startServer(t);
  for (let i = 0; i < 20; i++) {
    const c = await RawConn.connect(srv.port);
    const variants = [
      'POST /v1/topics/cut/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a":',
      'GET /v1/topics/cut/stream HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /v1/topics/cut/events?wait=30 HTTP/1.1\r\nHost: x\r\n\r\n',
      'GET /healthz HTTP/1.1\r\nHo',
    ];
    await c.write(variants[i % variants.length]);
    if (i % 2) await sleep(5);
    c.sock.resetAndDestroy ? c.sock.resetAndDestroy() : c.destroy();
  }
  await sleep(100);
  await assertHealthy(srv, 'abrupt disconnects');
});

test('every error response carries Herald-Epoch and exactly {"error","message"}', async (t) => {
  const srv = await startServer(t);
  const checks = [
    [await get(`${srv.url}/nope`), 404, 'not_found'],
    [await request(`${srv.url}/v1/topics/a/events`, { method: 'DELETE' }), 405, 'method_not_allowed'],
    [await request(`${srv.url}/v1/topics/a%20b/events`, { method: 'POST', body: '1' }), 400, 'invalid_topic'],
    [await request(`${srv.url}/v1/topics/a/events?type=%20`, { method: 'POST', body: '1' }), 400, 'invalid_type'],
    [await request(`${srv.url}/v1/topics/a/events`, { method: 'POST', headers: { 'Content-Type': 'image/gif' }, body: '1' }), 415, 'unsupported_media_type'],
    [await get(`${srv.url}/v1/topics/a/events?limit=0`), 400, 'invalid_parameter'],
    [await get(`${srv.url}/v1/topics/a/events?since=x`), 400, 'invalid_id'],
  ];
  const epochs = new Set();
  for (const [r, status, code] of checks) {
    assertError(r, status, code);
    epochs.add(assertEpoch(r));
  }
  assert.equal(epochs.size, 1, 'one epoch');
});
