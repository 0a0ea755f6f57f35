// SPEC §6 and §10: `herald publish --via ws` and `herald subscribe --via ws` (the herald.v1
// protocol on /v1/ws), checked against what the HTTP API stores and serves.
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, test, runHerald, spawnHerald } from './lib/server.mjs';
import { get, publishOk, waitFor, sleep, ID_RE, TIME_RE } from './lib/http.mjs';
import { heraldToken } from './lib/jwt.mjs';
import { OP, buildFrame, parseFrame, parseClose, wsAccept } from './lib/ws_raw.mjs';

const SECRET = 'e2e-jwt-secret-0123456789-abcdefghijklmnop'; // ≥ 32 bytes

const lines = (out) => out.split('\n').filter((l) => l.length > 0);
const parsedLines = (out) => lines(out).map((l) => JSON.parse(l));

function assertClean(res, what) {
  assert.doesNotMatch(res.stderr, /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/, `${what}: sanitizer report\n${res.stderr}`);
}

async function history(base, topic) {
  const r = await get(`${base}/v1/topics/${topic}/events?since=0`);
  assert.equal(r.status, 200, r.text);
  return r.json.events;
}

/** Spawns `herald subscribe --via ws …`; killed with SIGKILL if still running when the test ends. */
function spawnSubscriber(t, srv, args, opts) {
  const sub = spawnHerald(['subscribe', '--url', srv.url, '--via', 'ws', ...args], opts);
  t.after(() => {
    if (sub.child.exitCode === null && sub.child.signalCode === null) sub.child.kill('SIGKILL');
  });
  return sub;
}

async function exitOf(sub, timeout = 15000) {
  const res = await Promise.race([sub.exited, sleep(timeout).then(() => null)]);
  assert.ok(res, `subscribe did not exit within ${timeout} ms; stdout:\n${sub.stdout}\nstderr:\n${sub.stderr}`);
  assertClean(sub, 'subscribe --via ws');
  return res;
}

const printedCount = (sub) => lines(sub.stdout).length;

test('publish --via ws: the acked id is the stored event (JSON, text, stdin, --type, HERALD_URL)', async (t) => {
  const srv = await startServer(t);
  const json = await runHerald(['publish', '--via', 'ws', '--url', srv.url, 'cliws/pub', '{"a": [1, 2], "b": null}']);
  assertClean(json, 'publish --via ws');
  assert.equal(json.code, 0, json.stderr);
  const text = await runHerald(['publish', '--via', 'ws', 'cliws/pub', 'just text', '--type', 'note'], { env: { HERALD_URL: srv.url } });
  assert.equal(text.code, 0, text.stderr);
  const stdin = await runHerald(['publish', '--via=ws', '--url', srv.url, 'cliws/pub'], { input: '{"from":"stdin"}\n' });
  assert.equal(stdin.code, 0, stdin.stderr);
  const stdinText = await runHerald(['publish', '--via', 'ws', '--url', srv.url, 'cliws/pub'], { input: 'line\n' });
  assert.equal(stdinText.code, 0, stdinText.stderr);

  const stored = await history(srv.url, 'cliws/pub');
  assert.equal(stored.length, 4);
  const results = [json, text, stdin, stdinText];
  for (let i = 0; i < 4; i++) {
    assert.equal(results[i].stdout, `{"id":"${stored[i].id}"}\n`, `publish ${i} prints {"id"} of the stored event`);
    assert.equal(results[i].stderr.trim(), '', `publish ${i}: nothing on stderr`);
  }
  assert.deepEqual(stored.map((e) => e.data), [{ a: [1, 2], b: null }, 'just text', { from: 'stdin' }, 'line\n']);
  assert.deepEqual(stored.map((e) => e.type), ['message', 'note', 'message', 'message']);
});

test('publish --via ws: an idempotency key repeated is acked with the original id, stored once', async (t) => {
  const srv = await startServer(t);
  const args = ['publish', '--via', 'ws', '--url', srv.url, 'cliws/idem', '{"n":1}', '--idempotency-key', 'key-1'];
  const first = await runHerald(args);
  assert.equal(first.code, 0, first.stderr);
  const again = await runHerald(args);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, first.stdout);
  const stored = await history(srv.url, 'cliws/idem');
  assert.equal(stored.length, 1);
  assert.equal(first.stdout, `{"id":"${stored[0].id}"}\n`);
});

test('publish --via ws: refusals, TLS URLs, unreachable servers and bad --via values', async (t) => {
  const srv = await startServer(t);
  const bad = await runHerald(['publish', '--via', 'ws', '--url', srv.url, 'bad topic', '1']);
  assertClean(bad, 'bad topic');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^herald: .+ \(invalid_topic\)\n$/);
  assert.equal(bad.stdout, '');

  const badType = await runHerald(['publish', '--via', 'ws', '--url', srv.url, 'cliws/t', '1', '--type', 'no spaces']);
  assert.equal(badType.code, 1);
  assert.match(badType.stderr, /\(invalid_type\)/);

  const tls = await runHerald(['publish', '--via', 'ws', '--url', 'https://127.0.0.1:1', 'cliws/t', '1']);
  assert.equal(tls.code, 2);
  assert.match(tls.stderr, /http:\/\/.*only|TLS/i);

  const via = await runHerald(['publish', '--via', 'pigeon', '--url', srv.url, 'cliws/t', '1']);
  assert.equal(via.code, 2);
  assert.match(via.stderr, /--via/);

  await srv.stop();
  const down = await runHerald(['publish', '--via', 'ws', '--url', srv.url, 'cliws/t', '1'], { timeout: 12000 });
  assertClean(down, 'unreachable');
  assert.equal(down.code, 1);
  assert.match(down.stderr, /cannot reach/);
});

test('subscribe --via ws --count 3 prints exactly the event objects published over HTTP', async (t) => {
  const srv = await startServer(t);
  const start = await publishOk(srv.url, 'cliws/sub', 'before');
  const sub = spawnSubscriber(t, srv, ['cliws/sub', '--since', start.id, '--count', '3']);
  await sleep(300);
  const ids = [];
  ids.push((await publishOk(srv.url, 'cliws/sub', { i: 0 })).id);
  ids.push((await publishOk(srv.url, 'cliws/other', 'not subscribed', { contentType: 'text/plain' })).id);
  ids.push((await publishOk(srv.url, 'cliws/sub', 'text body', { contentType: 'text/plain', type: 'status' })).id);
  ids.push((await publishOk(srv.url, 'cliws/sub', [1, 'two', { three: 3 }])).id);
  const res = await exitOf(sub);
  assert.equal(res.code, 0, sub.stderr);

  const stored = (await history(srv.url, 'cliws/sub')).slice(1);
  assert.deepEqual(stored.map((e) => e.id), [ids[0], ids[2], ids[3]]);
  // One line per event: the server's event object, "op" dropped, byte for byte.
  assert.deepEqual(lines(sub.stdout), stored.map((e) => JSON.stringify(e)));
  const out = parsedLines(sub.stdout);
  assert.deepEqual(out.map((e) => e.topic), ['cliws/sub', 'cliws/sub', 'cliws/sub']);
  assert.deepEqual(out.map((e) => e.data), [{ i: 0 }, 'text body', [1, 'two', { three: 3 }]]);
  assert.deepEqual(out.map((e) => e.type), ['message', 'status', 'message']);
  for (const ev of out) {
    assert.deepEqual(Object.keys(ev), ['id', 'topic', 'type', 'time', 'data']);
    assert.match(ev.id, ID_RE);
    assert.match(ev.time, TIME_RE);
  }
});

test('subscribe --via ws without --since is live only; SIGINT exits 0', async (t) => {
  const srv = await startServer(t);
  await publishOk(srv.url, 'cliws/live', 'old', { contentType: 'text/plain' });
  const sub = spawnSubscriber(t, srv, ['cliws/live']);
  const published = [];
  await waitFor(async () => {
    if (sub.stdout.includes('\n')) return true;
    published.push((await publishOk(srv.url, 'cliws/live', `n${published.length}`, { contentType: 'text/plain' })).id);
    await sleep(100);
    return false;
  }, { timeout: 10000, message: 'a live event printed' });
  await sleep(200);
  sub.child.kill('SIGINT');
  const res = await exitOf(sub);
  assert.equal(res.code, 0, `SIGINT: exit 0\n${sub.stderr}`);
  const out = parsedLines(sub.stdout);
  assert.ok(out.length >= 1);
  for (const ev of out) {
    assert.ok(published.includes(ev.id), `printed ${ev.id}, published ${published}`);
    assert.notEqual(ev.data, 'old');
  }
  // Each live event once, in order.
  assert.deepEqual(out.map((e) => e.id), published.slice(published.indexOf(out[0].id), published.indexOf(out[0].id) + out.length));
});

test('subscribe --via ws: patterns, several TOPICs, --since replay then live', async (t) => {
  const srv = await startServer(t);
  const want = [];
  for (const [topic, data] of [
    ['pat/a', 1],
    ['pat/a/b', 'no: two segments under pat'],
    ['other/x', 'no'],
    ['deep/1/2', 2],
    ['pat/b', 3],
    ['deep', 'no: ** needs a segment'],
  ]) {
    const rec = await publishOk(srv.url, topic, data);
    if (typeof data === 'number') want.push({ id: rec.id, topic, data });
  }
  const sub = spawnSubscriber(t, srv, ['pat/*', 'deep/**', '--since', '0', '--count', '4']);
  await waitFor(() => printedCount(sub) >= 3, { timeout: 10000, message: 'three replayed events' });
  const live = await publishOk(srv.url, 'deep/live', 4);
  want.push({ id: live.id, topic: 'deep/live', data: 4 });
  const res = await exitOf(sub);
  assert.equal(res.code, 0, sub.stderr);
  // Each subscription replays on its own, so only the live event's place is fixed.
  const out = parsedLines(sub.stdout).map(({ id, topic, data }) => ({ id, topic, data }));
  assert.deepEqual(out[3], want[3]);
  assert.deepEqual([...out].sort((a, b) => Number(a.id) - Number(b.id)), want);
});

test('subscribe --via ws --since: replays after the id, overlapping TOPICs print each event once', async (t) => {
  const srv = await startServer(t);
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push((await publishOk(srv.url, i % 2 ? 'ov/b' : 'ov/a', { i })).id);
  // ov/a events match all three TOPICs, ov/b events two of them.
  const sub = spawnSubscriber(t, srv, ['ov/*', 'ov/a', '**', '--since', ids[1], '--count', '5']);
  await waitFor(() => printedCount(sub) >= 3, { timeout: 10000, message: 'the replay of three events' });
  await sleep(300);
  assert.equal(printedCount(sub), 3, `exactly the 3 events after --since, once each:\n${sub.stdout}`);
  ids.push((await publishOk(srv.url, 'ov/a', { i: 5 })).id);
  ids.push((await publishOk(srv.url, 'ov/b', { i: 6 })).id);
  const res = await exitOf(sub);
  assert.equal(res.code, 0, sub.stderr);
  const out = parsedLines(sub.stdout);
  assert.deepEqual(out.slice(0, 3).map((e) => e.id).sort((a, b) => a - b), ids.slice(2, 5));
  assert.deepEqual(out.slice(3).map((e) => e.id), ids.slice(5));
  assert.deepEqual(out.slice(3).map((e) => e.data), [{ i: 5 }, { i: 6 }]);
});

test('subscribe --via ws with --jwt-secret: forbidden subscribe exits 1 with the message; tokens work', async (t) => {
  const srv = await startServer(t, { args: ['--jwt-secret', SECRET] });
  const token = heraldToken(SECRET, { subscribe: ['ok/*'] });

  const forbidden = await runHerald(['subscribe', '--via', 'ws', '--url', srv.url, 'secret/x', '--token', token]);
  assertClean(forbidden, 'forbidden');
  assert.equal(forbidden.code, 1, forbidden.stderr);
  assert.match(forbidden.stderr, /^herald: .+ \(forbidden\)\n$/);
  assert.equal(forbidden.stdout, '');

  const anonymous = await runHerald(['subscribe', '--via', 'ws', '--url', srv.url, 'ok/1']);
  assert.equal(anonymous.code, 1);
  assert.match(anonymous.stderr, /^herald: .+ \(401\)\n$/);

  const rec = await publishOk(srv.url, 'ok/1', { allowed: true });
  const allowed = await runHerald(['subscribe', '--via', 'ws', '--url', srv.url, 'ok/*', '--since', '0', '--count', '1'], { env: { HERALD_TOKEN: token } });
  assertClean(allowed, 'allowed');
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.deepEqual(parsedLines(allowed.stdout).map((e) => [e.id, e.topic, e.data]), [[rec.id, 'ok/1', { allowed: true }]]);
});

test('subscribe --via ws survives kill -9 and a graceful restart: every event exactly once', async (t) => {
  const srv = await startServer(t);
  const ids = [];
  const pub = async (n) => ids.push((await publishOk(srv.url, 'cliws/dur', { n })).id);
  await pub(0);
  await pub(1);
  const sub = spawnSubscriber(t, srv, ['cliws/dur', '--since', '0', '--count', '10']);
  await waitFor(() => printedCount(sub) >= 2, { timeout: 10000, message: 'the first two events' });
  await pub(2);
  await waitFor(() => printedCount(sub) >= 3, { timeout: 10000, message: 'a live event' });

  await srv.kill9();
  await srv.restart();
  // Published before the client is back: it must get them from its resumed subscription.
  await pub(3);
  await pub(4);
  await waitFor(() => printedCount(sub) >= 5, { timeout: 15000, message: 'the events published while it was away' });
  await pub(5);
  await waitFor(() => printedCount(sub) >= 6, { timeout: 10000, message: 'a live event after the reconnect' });

  await srv.restart(); // SIGTERM: the server closes the WebSocket with 1001
  await pub(6);
  await pub(7);
  await waitFor(() => printedCount(sub) >= 8, { timeout: 15000, message: 'the events after the graceful restart' });
  await pub(8);
  await pub(9);
  const res = await exitOf(sub);
  assert.equal(res.code, 0, sub.stderr);
  const out = parsedLines(sub.stdout);
  assert.deepEqual(out.map((e) => e.id), ids, `each event once, in order\nstderr:\n${sub.stderr}`);
  assert.deepEqual(out.map((e) => e.data), ids.map((_, n) => ({ n })));
  assert.match(sub.stderr, /reconnecting in \d+ ms/);
  for (const m of sub.stderr.matchAll(/reconnecting in (\d+) ms/g)) {
    const ms = Number(m[1]);
    assert.ok(ms >= 1000 && ms <= 3000, `reconnect delay ${ms} ms within 1-3 s`);
  }
});

test('subscribe --via ws: --help describes ws; https URLs are refused', async () => {
  const help = await runHerald(['subscribe', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /sse \(default\), ws, poll or longpoll/);
  assert.doesNotMatch(help.stdout, /reserved/);
  const publishHelp = await runHerald(['publish', '--help']);
  assert.match(publishHelp.stdout, /--via MODE/);
  const tls = await runHerald(['subscribe', '--via', 'ws', '--url', 'https://127.0.0.1:1', 't']);
  assert.equal(tls.code, 2);
  assert.match(tls.stderr, /http:\/\/.*only|TLS/i);
});

// A scripted server on a plain socket: checks the client's handshake and frames, and sends what
// herald never does by itself (fragments with pings between them, every length encoding).
function fakeWsServer(t, script) {
  const state = { request: '', frames: [], errors: [] };
  const server = net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const send = (opts) => socket.write(buildFrame({ mask: false, ...opts }));
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        state.request = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        upgraded = true;
        const key = /^sec-websocket-key: *(\S+)/im.exec(state.request)[1];
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${wsAccept(key)}\r\nSec-WebSocket-Protocol: herald.v1\r\n\r\n`);
      }
      for (let parsed; (parsed = parseFrame(buf)); ) {
        buf = buf.subarray(parsed.size);
        state.frames.push(parsed.frame);
        if (!parsed.frame.masked) state.errors.push('an unmasked client frame');
        if (parsed.frame.opcode === OP.CLOSE) {
          send({ opcode: OP.CLOSE, payload: parsed.frame.payload });
          socket.end();
        } else if (parsed.frame.opcode === OP.TEXT) {
          script(JSON.parse(parsed.frame.payload.toString('utf8')), send);
        }
      }
    });
  });
  t.after(() => server.close());
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${server.address().port}`, state })));
}

test('subscribe --via ws reads fragmented messages, 16- and 64-bit lengths, answers pings, closes with 1000', async (t) => {
  const big = 'x'.repeat(70000);
  const medium = 'm'.repeat(300);
  const events = [
    `{"op":"event","id":"7","topic":"frag/t","type":"message","time":"2026-01-01T00:00:00.000Z","data":{"a":"\\u00e9 \u00e9"}}`,
    `{"op":"event","id":"8","topic":"frag/t","type":"message","time":"2026-01-01T00:00:00.001Z","data":"${medium}"}`,
    `{"op":"event","id":"9","topic":"frag/t","type":"big","time":"2026-01-01T00:00:00.002Z","data":"${big}"}`,
  ];
  const { url, state } = await fakeWsServer(t, (msg, send) => {
    if (msg.op !== 'subscribe') return;
    send({ opcode: OP.TEXT, payload: JSON.stringify({ op: 'subscribed', ref: msg.ref, topic: msg.topic, next: msg.since }) });
    send({ opcode: OP.PING, payload: 'p1' });
    const first = Buffer.from(events[0]);
    send({ opcode: OP.TEXT, fin: false, payload: first.subarray(0, 10) });
    send({ opcode: OP.PING, payload: 'p2' });
    send({ opcode: OP.CONT, fin: false, payload: first.subarray(10, 40) });
    send({ opcode: OP.CONT, fin: true, payload: first.subarray(40) });
    send({ opcode: OP.TEXT, payload: JSON.stringify({ op: 'pong', ref: 'x' }) });
    send({ opcode: OP.TEXT, payload: events[1] });
    send({ opcode: OP.TEXT, payload: events[2] });
  });
  const r = await runHerald(['subscribe', '--via', 'ws', '--url', url, 'frag/t', '--since', '6', '--count', '3', '--token', 'tok-123']);
  assertClean(r, 'fake server');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(lines(r.stdout), events.map((e) => e.replace('{"op":"event",', '{')));
  assert.deepEqual(state.errors, []);
  assert.match(state.request, /^GET \/v1\/ws HTTP\/1\.1\r\n/);
  assert.match(state.request, /\r\nsec-websocket-protocol: herald\.v1\r\n/i);
  assert.match(state.request, /\r\nsec-websocket-version: 13\r\n/i);
  assert.match(state.request, /\r\nauthorization: Bearer tok-123(\r\n|$)/i);
  assert.doesNotMatch(state.request, /sec-websocket-extensions/i, 'no permessage-deflate offered');
  const kinds = state.frames.map((f) => (f.opcode === OP.TEXT ? JSON.parse(f.payload).op : f.opcode === OP.PONG ? `pong:${f.payload}` : f.opcode === OP.CLOSE ? `close:${parseClose(f.payload).code}` : f.opcode));
  assert.deepEqual(kinds, ['subscribe', 'pong:p1', 'pong:p2', 'close:1000']);
  assert.deepEqual(JSON.parse(state.frames[0].payload), { op: 'subscribe', topic: 'frag/t', ref: '1', since: '6' });
});
