// RFC 6455 / RFC 7692 conformance of herald's WebSocket server (SPEC §6), organised like the
// Autobahn testsuite's sections. Every failure case asserts the EXACT close code herald sends and
// that the TCP connection is closed afterwards. Written from the RFCs, with a raw client
// (lib/ws_raw.mjs) that can send any bytes.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import zlib from 'node:zlib';
import { startServer, test } from './lib/server.mjs';
import { assertError, get, publishOk } from './lib/http.mjs';
import {
  OP,
  WsRaw,
  buildFrame,
  closePayload,
  deflateMessage,
  inflateMessage,
  parseClose,
  sleep,
  wsAccept,
} from './lib/ws_raw.mjs';

const RAW = '/v1/topics/t/ws'; // raw mode: a client text frame is published to t and comes back
const DEFLATE_OFFER = 'permessage-deflate; client_max_window_bits';

async function open(t, srv, opts = {}) {
  const ws = await WsRaw.open(srv.port, { path: RAW, ...opts });
  t.after(() => ws.destroy());
  return ws;
}

async function connect(t, srv, opts = {}) {
  const r = await WsRaw.connect(srv.port, opts);
  t.after(() => r.ws.destroy());
  return r;
}

/** The events stored in a topic (polling from the oldest). */
async function stored(srv, topic = 't') {
  const r = await get(`${srv.url}/v1/topics/${topic}/events?since=0`);
  assert.equal(r.status, 200, r.text);
  return r.json.events;
}

/** Sends the bytes on a fresh raw-mode connection; asserts the close code (and nothing before it). */
async function failsWith(t, srv, bytes, code, { path = RAW, opts = {} } = {}) {
  const ws = await open(t, srv, { path, ...opts });
  await ws.write(Buffer.isBuffer(bytes) ? bytes : Buffer.concat(bytes));
  return ws.expectClose(code, { strict: true });
}

/** Sends a text message and expects it back as an event text frame with the same bytes. */
async function roundTrip(ws, payload, send) {
  if (send) await send();
  else await ws.sendText(payload);
  const m = await ws.readText(5000);
  assert.equal(m.compressed, false);
  assert.equal(m.data.length, Buffer.byteLength(payload), 'echoed length');
  assert.ok(m.data.equals(Buffer.from(payload, 'utf8')), 'echoed bytes');
  return m;
}

const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// ---------------------------------------------------------------------------------------------
describe('1 opening handshake', () => {
  test('101 with the RFC 6455 sample key, Upgrade/Connection, Herald-Epoch', async (t) => {
    const srv = await startServer(t);
    const { ws, response } = await connect(t, srv, { path: '/v1/ws', key: 'dGhlIHNhbXBsZSBub25jZQ==' });
    assert.equal(response.status, 101);
    assert.equal(response.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(wsAccept('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(response.headers.upgrade.toLowerCase(), 'websocket');
    assert.equal(response.headers.connection.toLowerCase(), 'upgrade');
    assert.match(response.headers['herald-epoch'] ?? '', /^[0-9a-f]{8}$/);
    assert.equal(response.headers['sec-websocket-protocol'], undefined, 'no subprotocol when none offered');
    assert.equal(response.headers['sec-websocket-extensions'], undefined, 'no extension when none offered');
    assert.equal(response.headers['content-length'], undefined);
    // And the connection speaks the protocol.
    await ws.sendJson({ op: 'ping', ref: 'h' });
    assert.deepEqual(await ws.readJson(), { op: 'pong', ref: 'h' });
  });

  test('herald.v1 subprotocol is chosen when offered (alone or among others)', async (t) => {
    const srv = await startServer(t);
    for (const offer of ['herald.v1', 'chat, herald.v1', 'x.y,herald.v1 , z']) {
      const { response } = await connect(t, srv, { path: '/v1/ws', protocol: offer });
      assert.equal(response.status, 101, offer);
      assert.equal(response.headers['sec-websocket-protocol'], 'herald.v1', offer);
    }
    const { response } = await connect(t, srv, { path: '/v1/ws', protocol: 'other.v2' });
    assert.equal(response.status, 101);
    assert.equal(response.headers['sec-websocket-protocol'], undefined, 'an unknown subprotocol is not echoed');
    const both = await connect(t, srv, { path: '/v1/ws', headers: { 'Sec-WebSocket-Protocol': ['a', 'herald.v1'] } });
    assert.equal(both.response.headers['sec-websocket-protocol'], 'herald.v1', 'repeated header lines are joined');
  });

  test('missing or invalid Sec-WebSocket-Key → 400 JSON', async (t) => {
    const srv = await startServer(t);
    const keys = [
      null, // missing
      '',
      'abc',
      'dGhlIHNhbXBsZSBub25jZQ', // no padding
      'dGhlIHNhbXBsZSBub25j', // 15 bytes... not 16
      'dGhlIHNhbXBsZSBub25jZQ==AAAA', // too long
      'dGhlIHNhbXBsZSBub25jZR==', // non-zero padding bits
      'dGhlIHNhbXBsZSBub25jZ!==',
    ];
    for (const key of keys) {
      const { ws, response } = await connect(t, srv, { path: '/v1/ws', headers: { 'Sec-WebSocket-Key': key } });
      assertError(response, 400, 'bad_request', { context: `key ${JSON.stringify(key)}` });
      assert.ok(await ws.waitTcpClosed(3000), 'the connection closes after a refused handshake');
    }
  });

  test('Sec-WebSocket-Version 8 (or missing) → 426 with Sec-WebSocket-Version: 13', async (t) => {
    const srv = await startServer(t);
    for (const version of ['8', null, '12', '13, 8']) {
      const { response } = await connect(t, srv, { path: '/v1/ws', version: version ?? undefined, headers: version === null ? { 'Sec-WebSocket-Version': null } : {} });
      assertError(response, 426, 'bad_request', { context: `version ${version}` });
      assert.equal(response.headers['sec-websocket-version'], '13', `version ${version}`);
    }
  });

  test('POST to a WebSocket endpoint → 405 with Allow (or 400)', async (t) => {
    const srv = await startServer(t);
    for (const path of ['/v1/ws', RAW]) {
      const { response } = await connect(t, srv, { path, method: 'POST' });
      assert.ok([400, 405].includes(response.status), `${path}: ${response.status} ${response.text}`);
      if (response.status === 405) {
        assertError(response, 405, 'method_not_allowed', { context: path });
        assert.match(response.headers.allow ?? '', /\bGET\b/, `Allow on ${path}`);
      } else {
        assertError(response, 400, 'bad_request', { context: path });
      }
    }
  });

  test('Upgrade header missing or wrong, Connection without upgrade, HTTP/1.0 → 400', async (t) => {
    const srv = await startServer(t);
    const cases = [
      { headers: { Upgrade: null } },
      { headers: { Upgrade: 'h2c' } },
      { headers: { Connection: 'keep-alive' } },
      { headers: { Connection: null } },
      { httpVersion: '1.0' },
    ];
    for (const c of cases) {
      const { response } = await connect(t, srv, { path: '/v1/ws', ...c });
      assertError(response, 400, 'bad_request', { context: JSON.stringify(c) });
    }
    // Token lists and case are fine.
    const ok = await connect(t, srv, { path: '/v1/ws', headers: { Upgrade: 'WebSocket', Connection: 'keep-alive, Upgrade' } });
    assert.equal(ok.response.status, 101);
  });

  test('a frame sent right behind the handshake (same TCP write) is processed after the 101', async (t) => {
    const srv = await startServer(t);
    const c = await WsRaw.connect(srv.port, { path: RAW, key: 'dGhlIHNhbXBsZSBub25jZQ==', timeout: 5000, trailer: buildFrame({ opcode: OP.PING, payload: 'early' }) });
    t.after(() => c.ws.destroy());
    assert.equal(c.response.status, 101);
    const f = await c.ws.readFrame();
    assert.equal(f.opcode, OP.PONG);
    assert.equal(f.payload.toString(), 'early');
  });

  test('huge and numerous upgrade headers: answered (101 or 431), never a crash', async (t) => {
    const srv = await startServer(t);
    const offers = Array.from({ length: 600 }, (_, i) => `x-ext-${i}; a=${i}; b`).join(', ');
    const a = await connect(t, srv, { path: '/v1/ws', extensions: `${offers}, permessage-deflate; client_max_window_bits` });
    assert.ok([101, 431].includes(a.response.status), `${a.response.status}`);
    const lines = {};
    for (let i = 0; i < 300; i++) lines[`X-Filler-${i}`] = 'v';
    lines['Sec-WebSocket-Protocol'] = Array.from({ length: 100 }, (_, i) => `p${i}`).concat('herald.v1');
    const b = await connect(t, srv, { path: '/v1/ws', headers: lines });
    assert.ok([101, 431].includes(b.response.status), `${b.response.status}`);
    if (b.response.status === 101) assert.equal(b.response.headers['sec-websocket-protocol'], 'herald.v1');
    const big = await connect(t, srv, { path: '/v1/ws', extensions: 'permessage-deflate; ' + 'x'.repeat(20000) });
    assertError(big.response, 431, 'headers_too_large');
    const bad = await connect(t, srv, { path: '/v1/ws', extensions: 'permessage-deflate; client_max_window_bits=99; server_max_window_bits=8, permessage-deflate; ;;, ,' });
    assert.equal(bad.response.status, 101);
    const h = await get(`${srv.url}/healthz`);
    assert.equal(h.status, 200);
  });

  test('raw mode handshake: bad topic → 400 invalid_topic, bad since → 400 invalid_id', async (t) => {
    const srv = await startServer(t);
    const a = await connect(t, srv, { path: '/v1/topics/bad%20topic/ws' });
    assertError(a.response, 400, 'invalid_topic');
    const b = await connect(t, srv, { path: '/v1/topics/t/ws?since=abc' });
    assertError(b.response, 400, 'invalid_id');
  });
});

// ---------------------------------------------------------------------------------------------
describe('1 framing', () => {
  test('payload lengths 0, 1, 125, 126, 127, 65535, 65536 round-trip through a publish', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    for (const n of [0, 1, 125, 126, 127, 65535, 65536]) {
      const payload = 'x'.repeat(n);
      const m = await roundTrip(ws, payload);
      const f = m.frames[0];
      assert.equal(m.frames.length, 1, `one frame for ${n}`);
      assert.equal(f.masked, false, 'server frames are never masked');
      assert.equal(f.lengthBits, n < 126 ? 7 : n <= 65535 ? 16 : 64, `minimal length encoding for ${n}`);
    }
    const events = await stored(srv);
    assert.deepEqual(events.map((e) => e.data.length), [0, 1, 125, 126, 127, 65535, 65536]);
    assert.ok(events.every((e) => e.type === 'message'));
  });

  test('a frame split into 1-byte TCP writes, and one header split across writes with delays', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    const small = buildFrame({ opcode: OP.TEXT, payload: 'split-héllo' });
    await roundTrip(ws, 'split-héllo', () => ws.writeSplit(small, { sizes: 1, delay: 2 }));
    const big = buildFrame({ opcode: OP.TEXT, payload: 'y'.repeat(70000) });
    // 2 bytes, then the 64-bit length, then the mask key, then the payload in uneven pieces.
    await roundTrip(ws, 'y'.repeat(70000), () => ws.writeSplit(big, { sizes: [1, 1, 3, 5, 2, 2, 1000, 7, 30000], delay: 10 }));
    // Two whole frames in one write.
    await ws.write(Buffer.concat([buildFrame({ payload: 'one' }), buildFrame({ payload: 'two' })]));
    assert.equal((await ws.readText()).text, 'one');
    assert.equal((await ws.readText()).text, 'two');
  });

  test('the mask key is applied per frame (all-zero key, and a key with every byte set)', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await roundTrip(ws, 'zero-mask', () => ws.sendText('zero-mask', { maskKey: Buffer.alloc(4) }));
    await roundTrip(ws, 'ff-mask', () => ws.sendText('ff-mask', { maskKey: Buffer.from([0xff, 0xff, 0xff, 0xff]) }));
  });

  test('an unmasked client frame → 1002', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, buildFrame({ opcode: OP.TEXT, payload: 'hello', mask: false }), 1002);
    assert.deepEqual(await stored(srv), [], 'nothing published');
    // Unmasked control frames too.
    await failsWith(t, srv, buildFrame({ opcode: OP.PING, payload: 'p', mask: false }), 1002);
    await failsWith(t, srv, buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000), mask: false }), 1002);
  });

  test('non-minimal lengths → 1002 (16-bit for 5 bytes, 64-bit for 200 and 65535 bytes)', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, buildFrame({ payload: 'hello', lengthBits: 16 }), 1002);
    await failsWith(t, srv, buildFrame({ payload: 'a'.repeat(125), lengthBits: 16 }), 1002);
    await failsWith(t, srv, buildFrame({ payload: 'a'.repeat(200), lengthBits: 64 }), 1002);
    await failsWith(t, srv, buildFrame({ payload: 'a'.repeat(65535), lengthBits: 64 }), 1002);
    assert.deepEqual(await stored(srv), []);
  });

  test('a 64-bit length with its most significant bit set → 1002 (before any payload)', async (t) => {
    const srv = await startServer(t);
    const head = buildFrame({ payload: '', rawLength64: hex('80 00 00 00 00 00 00 05') });
    // buildFrame appended the mask key only (the payload is not sent).
    await failsWith(t, srv, head, 1002);
    await failsWith(t, srv, buildFrame({ payload: '', rawLength64: hex('ff ff ff ff ff ff ff ff') }), 1002);
  });
});

// ---------------------------------------------------------------------------------------------
describe('2 ping/pong', () => {
  test('a ping gets a pong with the same payload (empty, text, binary, 125 bytes)', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv, { path: '/v1/ws' });
    const payloads = [Buffer.alloc(0), Buffer.from('Hello, pong'), hex('00 ff fe 80 c0 ed a0 80'), Buffer.alloc(125, 0xfe)];
    for (const p of payloads) {
      await ws.sendFrame({ opcode: OP.PING, payload: p });
      const f = await ws.readFrame();
      assert.equal(f.opcode, OP.PONG, `pong for ${p.length} bytes`);
      assert.equal(f.fin, true);
      assert.equal(f.rsv1, false);
      assert.ok(f.payload.equals(p), `pong payload ${f.payload.toString('hex')} == ${p.toString('hex')}`);
    }
    // Ten pings in one write: ten pongs, in order.
    await ws.write(Buffer.concat([...Array(10).keys()].map((i) => buildFrame({ opcode: OP.PING, payload: `p${i}` }))));
    for (let i = 0; i < 10; i++) assert.equal((await ws.readFrame()).payload.toString(), `p${i}`);
  });

  test('a ping split across TCP writes is answered once whole', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.writeSplit(buildFrame({ opcode: OP.PING, payload: 'slow ping payload' }), { sizes: 1, delay: 3 });
    const f = await ws.readFrame();
    assert.equal(f.opcode, OP.PONG);
    assert.equal(f.payload.toString(), 'slow ping payload');
  });

  test('a ping with a 126-byte payload → 1002', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, buildFrame({ opcode: OP.PING, payload: Buffer.alloc(126, 0x61) }), 1002);
    // Announced only (the header says 126, nothing follows).
    await failsWith(t, srv, buildFrame({ opcode: OP.PING, payload: '', length: 126, lengthBits: 16 }), 1002);
    // A close or pong that is too long, too.
    await failsWith(t, srv, buildFrame({ opcode: OP.PONG, payload: Buffer.alloc(200) }), 1002);
    await failsWith(t, srv, buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000, 'r'.repeat(124)) }), 1002);
  });

  test('a fragmented ping → 1002', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, [buildFrame({ opcode: OP.PING, payload: 'a', fin: false }), buildFrame({ opcode: OP.CONT, payload: 'b' })], 1002);
    await failsWith(t, srv, buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000), fin: false }), 1002);
  });

  test('an unsolicited pong is ignored', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.sendFrame({ opcode: OP.PONG, payload: 'unsolicited' });
    await ws.sendFrame({ opcode: OP.PONG, payload: '' });
    const after = await ws.quiet(200);
    assert.deepEqual(after, [], 'nothing is sent for a pong');
    await roundTrip(ws, 'still here');
    assert.deepEqual((await stored(srv)).map((e) => e.data), ['still here']);
  });
});

// ---------------------------------------------------------------------------------------------
describe('3 reserved bits', () => {
  for (const [name, bits] of [
    ['RSV1', { rsv1: true }],
    ['RSV2', { rsv2: true }],
    ['RSV3', { rsv3: true }],
    ['RSV1+2+3', { rsv1: true, rsv2: true, rsv3: true }],
  ]) {
    test(`${name} on a text frame without an extension → 1002`, async (t) => {
      const srv = await startServer(t);
      await failsWith(t, srv, buildFrame({ payload: 'hello', ...bits }), 1002);
      assert.deepEqual(await stored(srv), []);
    });
  }

  test('RSV bits on control frames → 1002 (also with permessage-deflate agreed)', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, buildFrame({ opcode: OP.PING, payload: 'p', rsv2: true }), 1002);
    await failsWith(t, srv, buildFrame({ opcode: OP.PING, payload: 'p', rsv1: true }), 1002, { opts: { extensions: DEFLATE_OFFER } });
    await failsWith(t, srv, buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000), rsv3: true }), 1002);
    // RSV2 stays reserved under permessage-deflate.
    await failsWith(t, srv, buildFrame({ payload: 'x', rsv2: true }), 1002, { opts: { extensions: DEFLATE_OFFER } });
  });

  test('a frame with RSV3 after a good ping: the ping is answered first, then 1002', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.write(Buffer.concat([buildFrame({ opcode: OP.PING, payload: 'first' }), buildFrame({ payload: 'bad', rsv3: true })]));
    const pong = await ws.readFrame();
    assert.equal(pong.opcode, OP.PONG);
    assert.equal(pong.payload.toString(), 'first');
    await ws.expectClose(1002, { strict: true });
  });
});

// ---------------------------------------------------------------------------------------------
describe('4 opcodes', () => {
  test('reserved opcodes 3-7 and 11-15 → 1002', async (t) => {
    const srv = await startServer(t);
    for (const op of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) {
      const ws = await open(t, srv);
      await ws.sendFrame({ opcode: op, payload: op < 8 ? 'data' : '' });
      const c = await ws.expectClose(undefined, { strict: true });
      assert.equal(c.code, 1002, `opcode ${op}: close ${c.code} "${c.reason}"`);
    }
  });

  test('a reserved opcode after a valid message: the message is published, then 1002', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.write(Buffer.concat([buildFrame({ payload: 'valid' }), buildFrame({ opcode: 5, payload: 'x' })]));
    await ws.expectClose(1002);
    await sleep(100);
    assert.deepEqual((await stored(srv)).map((e) => e.data), ['valid']);
  });

  test('a binary frame → 1003 (JSON and raw mode, single and fragmented)', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, buildFrame({ opcode: OP.BINARY, payload: hex('00 01 02') }), 1003, { path: '/v1/ws' });
    await failsWith(t, srv, buildFrame({ opcode: OP.BINARY, payload: hex('00 01 02') }), 1003);
    await failsWith(t, srv, buildFrame({ opcode: OP.BINARY, payload: '' }), 1003);
    await failsWith(t, srv, buildFrame({ opcode: OP.BINARY, payload: 'ab', fin: false }), 1003);
    assert.deepEqual(await stored(srv), []);
  });
});

// ---------------------------------------------------------------------------------------------
describe('5 fragmentation', () => {
  test('text in 3 fragments with a ping in between → one message; the pong comes first', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.sendFrame({ opcode: OP.TEXT, payload: 'Hello, ', fin: false });
    await sleep(20);
    await ws.sendFrame({ opcode: OP.PING, payload: 'between' });
    await sleep(20);
    await ws.sendFrame({ opcode: OP.CONT, payload: 'frag', fin: false });
    await sleep(20);
    await ws.sendFrame({ opcode: OP.CONT, payload: 'mented world' });
    const first = await ws.readFrame();
    assert.equal(first.opcode, OP.PONG, 'the pong comes back before the message is published');
    assert.equal(first.payload.toString(), 'between');
    const m = await ws.readText();
    assert.equal(m.text, 'Hello, fragmented world');
    assert.deepEqual((await stored(srv)).map((e) => e.data), ['Hello, fragmented world']);
  });

  test('the pong is answered while the message is unfinished (before its last fragment)', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.sendFrame({ opcode: OP.TEXT, payload: 'part1', fin: false });
    await ws.sendFrame({ opcode: OP.PING, payload: 'mid' });
    const f = await ws.readFrame(2000);
    assert.equal(f.opcode, OP.PONG);
    assert.equal(f.payload.toString(), 'mid');
    await ws.sendFrame({ opcode: OP.CONT, payload: '+part2' });
    assert.equal((await ws.readText()).text, 'part1+part2');
  });

  test('fragments of one byte each, empty fragments, and a pong between fragments', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    const text = 'frag€𝄞!';
    const bytes = Buffer.from(text);
    const frames = [buildFrame({ opcode: OP.TEXT, payload: '', fin: false })];
    for (let i = 0; i < bytes.length; i++) {
      frames.push(buildFrame({ opcode: OP.CONT, payload: bytes.subarray(i, i + 1), fin: false }));
      if (i === 3) frames.push(buildFrame({ opcode: OP.PONG, payload: 'x' }));
    }
    frames.push(buildFrame({ opcode: OP.CONT, payload: '', fin: true }));
    await ws.write(Buffer.concat(frames));
    assert.equal((await ws.readText()).text, text);
  });

  test('a continuation frame without a message → 1002', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, buildFrame({ opcode: OP.CONT, payload: 'orphan' }), 1002);
    await failsWith(t, srv, buildFrame({ opcode: OP.CONT, payload: 'orphan', fin: false }), 1002);
    // After a complete message too.
    const ws = await open(t, srv);
    await ws.write(Buffer.concat([buildFrame({ payload: 'done' }), buildFrame({ opcode: OP.CONT, payload: 'late' })]));
    await ws.expectClose(1002);
  });

  test('a new text frame inside an unfinished fragmented message → 1002', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, [buildFrame({ payload: 'start', fin: false }), buildFrame({ payload: 'new message' })], 1002);
    await failsWith(t, srv, [buildFrame({ payload: 'start', fin: false }), buildFrame({ payload: 'new', fin: false })], 1002);
    await failsWith(t, srv, [buildFrame({ payload: 'start', fin: false }), buildFrame({ opcode: OP.BINARY, payload: 'b' })], 1002);
    assert.deepEqual(await stored(srv), [], 'neither part is published');
  });
});

// ---------------------------------------------------------------------------------------------
describe('6 UTF-8 handling', () => {
  test('valid multi-byte text is accepted (2-, 3-, 4-byte sequences, U+FFFF, U+10FFFF, BOM)', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    const samples = ['κόσμε', '€ 中文 日本語', '𝄞 😀 🏳️‍🌈', '\u{FFFF}\u{10FFFF}\u{FEFF}\u{E000}\u{D7FF}', '\u0080\u07FF\u0800'];
    for (const s of samples) await roundTrip(ws, s);
    // A multi-byte sequence split between fragments is fine.
    const b = Buffer.from('a😀b');
    await roundTrip(ws, 'a😀b', () =>
      ws.write(Buffer.concat([buildFrame({ payload: b.subarray(0, 3), fin: false }), buildFrame({ opcode: OP.CONT, payload: b.subarray(3) })])),
    );
    assert.deepEqual((await stored(srv)).map((e) => e.data), [...samples, 'a😀b']);
  });

  const invalid = [
    ['overlong 2-byte "/" C0 AF', 'C0 AF'],
    ['overlong 3-byte E0 80 AF', 'E0 80 AF'],
    ['overlong 4-byte F0 80 80 AF', 'F0 80 80 AF'],
    ['surrogate ED A0 80', 'ED A0 80'],
    ['surrogate ED BF BF', 'ED BF BF'],
    ['above U+10FFFF: F4 90 80 80', 'F4 90 80 80'],
    ['F5 lead byte', 'F5 80 80 80'],
    ['FE / FF bytes', 'FE FF'],
    ['lone continuation byte', '80'],
    ['truncated at the end (E2 82)', '61 62 E2 82'],
    ['truncated 4-byte at the end (F0 9F 98)', 'F0 9F 98'],
    ['lead byte followed by ASCII', 'C3 41'],
  ];
  test('invalid UTF-8 in a text frame → 1007 (overlong, surrogates, > U+10FFFF, truncated …)', async (t) => {
    const srv = await startServer(t);
    for (const [name, bytes] of invalid) {
      const ws = await open(t, srv);
      await ws.sendText(Buffer.concat([Buffer.from('κόσμε'), hex(bytes)]));
      const c = await ws.expectClose(undefined, { strict: true });
      assert.equal(c.code, 1007, `${name}: close ${c.code} "${c.reason}"`);
    }
    assert.deepEqual(await stored(srv), [], 'nothing published');
  });

  test('invalid UTF-8 in the JSON protocol → 1007 too (not an error op)', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, buildFrame({ payload: Buffer.concat([Buffer.from('{"op":"ping","ref":"'), hex('ED A0 80'), Buffer.from('"}')]) }), 1007, { path: '/v1/ws' });
  });

  test('invalid UTF-8 fails fast: the close comes before the final fragment is sent', async (t) => {
    const srv = await startServer(t);
    // Impossible already in the first fragment: the surrogate lead ED A0, the never-valid C0, and
    // F4 90 (above U+10FFFF) — each is known bad at its second byte.
    for (const bad of ['ED A0', 'C0', 'F4 90', 'F8']) {
      const ws = await open(t, srv);
      await ws.sendFrame({ payload: Buffer.concat([Buffer.from('valid start '), hex(bad)]), fin: false });
      const c = await ws.expectClose(undefined, { strict: true, timeout: 2000 });
      assert.equal(c.code, 1007, `${bad}: close ${c.code} "${c.reason}" before the message ends`);
      assert.equal(await ws.write(buildFrame({ opcode: OP.CONT, payload: 'end' })), false, 'the connection is gone before the final fragment');
    }
    // A sequence split across fragments that is only impossible once the second one arrives:
    // F4 | 90 80 80. The close comes after the second fragment, before the third (final) one.
    const ws = await open(t, srv);
    await ws.sendFrame({ payload: hex('F4'), fin: false });
    assert.deepEqual(await ws.quiet(150), [], 'F4 alone may still start a valid sequence');
    await ws.sendFrame({ opcode: OP.CONT, payload: hex('90 80 80'), fin: false });
    await ws.expectClose(1007, { strict: true, timeout: 2000 });
    // Split inside a single frame across TCP writes: fails at the bad byte, before the frame ends.
    const ws2 = await open(t, srv);
    const frame = buildFrame({ payload: Buffer.concat([hex('CE BA ED A0 80'), Buffer.alloc(60, 0x61)]) });
    await ws2.write(frame.subarray(0, 6 + 4)); // header (2) + mask (4) + 4 payload bytes: "κ" ED A0
    await ws2.expectClose(1007, { strict: true, timeout: 2000 });
    assert.deepEqual(await stored(srv), []);
  });

  test('invalid UTF-8 split across fragments → 1007', async (t) => {
    const srv = await startServer(t);
    // Overlong E0 | 80 AF, surrogate ED | A0 80, truncated at the very end.
    await failsWith(t, srv, [buildFrame({ payload: hex('E0'), fin: false }), buildFrame({ opcode: OP.CONT, payload: hex('80 AF') })], 1007);
    await failsWith(t, srv, [buildFrame({ payload: hex('61 ED'), fin: false }), buildFrame({ opcode: OP.CONT, payload: hex('A0 80') })], 1007);
    await failsWith(t, srv, [buildFrame({ payload: 'ok', fin: false }), buildFrame({ opcode: OP.CONT, payload: hex('F0 9F 98') })], 1007);
    // A valid sequence across three fragments is fine.
    const ws = await open(t, srv);
    await ws.write(Buffer.concat([
      buildFrame({ payload: hex('F0'), fin: false }),
      buildFrame({ opcode: OP.CONT, payload: hex('9F 98'), fin: false }),
      buildFrame({ opcode: OP.CONT, payload: hex('80') }),
    ]));
    assert.equal((await ws.readText()).text, '😀');
  });
});

// ---------------------------------------------------------------------------------------------
describe('9 limits', () => {
  test('--ws-max-message 1KiB: 1024 bytes pass, 1025 → 1009', async (t) => {
    const srv = await startServer(t, { args: ['--ws-max-message', '1KiB'] });
    const ws = await open(t, srv);
    await roundTrip(ws, 'm'.repeat(1024));
    await failsWith(t, srv, buildFrame({ payload: 'm'.repeat(1025) }), 1009);
    // JSON mode too.
    await failsWith(t, srv, buildFrame({ payload: 'm'.repeat(5000) }), 1009, { path: '/v1/ws' });
    assert.equal((await stored(srv)).length, 1);
  });

  test('1009 as soon as the length header announces too much (no payload sent)', async (t) => {
    const srv = await startServer(t, { args: ['--ws-max-message', '1KiB'] });
    const ws = await open(t, srv);
    await ws.write(buildFrame({ payload: '', length: 2000, lengthBits: 16 }));
    await ws.expectClose(1009, { strict: true, timeout: 2000 });
    const ws2 = await open(t, srv);
    await ws2.write(buildFrame({ payload: '', length: 5 * 2 ** 30, lengthBits: 64 }));
    await ws2.expectClose(1009, { strict: true, timeout: 2000 });
  });

  test('a fragmented message over the limit → 1009 at the fragment that crosses it', async (t) => {
    const srv = await startServer(t, { args: ['--ws-max-message', '1KiB'] });
    const ws = await open(t, srv);
    await ws.sendFrame({ payload: 'a'.repeat(500), fin: false });
    await ws.sendFrame({ opcode: OP.CONT, payload: 'b'.repeat(500), fin: false });
    assert.deepEqual(await ws.quiet(100), []);
    // The header of the third fragment (100 bytes more) is enough to know.
    await ws.write(buildFrame({ opcode: OP.CONT, payload: '', length: 100 }));
    await ws.expectClose(1009, { strict: true, timeout: 2000 });
    // Exactly at the limit in fragments is fine.
    const ok = await open(t, srv);
    await roundTrip(ok, 'a'.repeat(1024), () =>
      ok.write(Buffer.concat([buildFrame({ payload: 'a'.repeat(1000), fin: false }), buildFrame({ opcode: OP.CONT, payload: 'a'.repeat(24) })])),
    );
  });

  test('default limit 1 MiB: exactly 1 MiB is published, 1 MiB + 1 → 1009', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    const m = 'q'.repeat(1 << 20);
    await ws.sendText(m);
    const back = await ws.readText(10000);
    assert.equal(back.data.length, 1 << 20);
    await failsWith(t, srv, buildFrame({ payload: '', length: (1 << 20) + 1 }), 1009);
  });

  test('control frames do not count against the message limit', async (t) => {
    const srv = await startServer(t, { args: ['--ws-max-message', '1KiB'] });
    const ws = await open(t, srv);
    const frames = [buildFrame({ payload: 'a'.repeat(1000), fin: false })];
    for (let i = 0; i < 20; i++) frames.push(buildFrame({ opcode: OP.PING, payload: 'p'.repeat(100) }));
    frames.push(buildFrame({ opcode: OP.CONT, payload: 'a'.repeat(24) }));
    await ws.write(Buffer.concat(frames));
    for (let i = 0; i < 20; i++) assert.equal((await ws.readFrame()).opcode, OP.PONG);
    assert.equal((await ws.readText()).data.length, 1024);
  });
});

// ---------------------------------------------------------------------------------------------
describe('7 close handling', () => {
  test('close 1000 with a reason is echoed with 1000, then TCP closes', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.sendClose(1000, 'bye bye');
    const c = await ws.expectClose(1000, { strict: true });
    assert.equal(c.tcpClosed, true);
  });

  test('an empty close is answered with an empty close', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.sendClose(null);
    const c = await ws.expectClose(null, { strict: true });
    assert.equal(c.frame.payload.length, 0);
  });

  test('a close with a 1-byte payload → 1002', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, buildFrame({ opcode: OP.CLOSE, payload: hex('03') }), 1002);
  });

  test('invalid close codes → 1002 (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)', async (t) => {
    const srv = await startServer(t);
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
      const ws = await open(t, srv);
      await ws.sendClose(code);
      const c = await ws.expectClose(undefined, { strict: true });
      assert.equal(c.code, 1002, `code ${code}: got ${c.code} "${c.reason}"`);
    }
  });

  test('valid close codes are echoed (1000-1003, 1007-1014, 3000, 3999, 4000, 4999)', async (t) => {
    const srv = await startServer(t);
    for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]) {
      const ws = await open(t, srv);
      await ws.sendClose(code, 'reason');
      const c = await ws.expectClose(undefined, { strict: true });
      assert.equal(c.code, code, `code ${code} echoed (got ${c.code})`);
    }
  });

  test('a close with a 123-byte valid UTF-8 reason (125-byte payload) is echoed', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.sendClose(1000, 'é'.repeat(61) + 'x');
    await ws.expectClose(1000, { strict: true });
  });

  test('a close reason with invalid UTF-8 → 1007', async (t) => {
    const srv = await startServer(t);
    for (const bad of ['CE BA E1 BD B9 CF 83 CE BC CE B5 ED A0 80 65 64 69 74 65 64', 'C0 80', 'E2 82']) {
      const ws = await open(t, srv);
      await ws.sendClose(1000, hex(bad));
      const c = await ws.expectClose(undefined, { strict: true });
      assert.equal(c.code, 1007, `${bad}: close ${c.code}`);
    }
  });

  test('after the client close the server closes TCP; data frames after the close are ignored', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.write(Buffer.concat([
      buildFrame({ payload: 'before' }),
      buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }),
      buildFrame({ payload: 'after' }),
      buildFrame({ opcode: OP.PING, payload: 'after' }),
    ]));
    const c = await ws.expectClose(1000);
    assert.ok(c.skipped.every((f) => f.opcode === OP.TEXT), 'no pong for a ping after the close');
    await sleep(150);
    assert.deepEqual((await stored(srv)).map((e) => e.data), ['before']);
  });

  test('a close in the middle of a fragmented message is answered (the message is dropped)', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv);
    await ws.write(Buffer.concat([buildFrame({ payload: 'unfinished', fin: false }), buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000) })]));
    await ws.expectClose(1000, { strict: true });
    await sleep(100);
    assert.deepEqual(await stored(srv), []);
  });

  test('a server-initiated close (idle 1001) that the client never answers ends TCP within ~5 s', async (t) => {
    const srv = await startServer(t, { args: ['--ws-ping-interval', '200ms'] });
    const ws = await open(t, srv);
    await ws.expectClose(1001, { timeout: 3000, closeTimeout: 7000 });
  });
});

// ---------------------------------------------------------------------------------------------
describe('server pings and idle timeout', () => {
  test('--ws-ping-interval 300ms: a silent client gets pings, then 1001 after ~2 intervals', async (t) => {
    const srv = await startServer(t, { args: ['--ws-ping-interval', '300ms'] });
    const started = Date.now(); // before the handshake: the server's timers start later
    const ws = await open(t, srv);
    const first = await ws.readFrame(2000);
    assert.equal(first.opcode, OP.PING, 'the server pings a silent client');
    assert.equal(first.payload.length, 0);
    const pingAt = Date.now() - started;
    assert.ok(pingAt >= 290 && pingAt < 1500, `first ping after ${pingAt} ms (interval 300)`);
    const c = await ws.expectClose(1001, { timeout: 3000, reply: true });
    const closeAt = Date.now() - started;
    assert.ok(closeAt >= 590 && closeAt < 2000, `close 1001 after ${closeAt} ms (2 × 300 ms without a frame)`);
    assert.ok(c.skipped.every((f) => f.opcode === OP.PING), 'only pings before the close');
  });

  test('a client that answers pings stays connected', async (t) => {
    const srv = await startServer(t, { args: ['--ws-ping-interval', '300ms'] });
    const ws = await open(t, srv);
    ws.autoPong = true;
    await assert.rejects(ws.readFrame(1300), /timed out/, 'no frame but pings (answered) for 1.3 s');
    const pings = ws.received.filter((f) => f.opcode === OP.PING).length;
    assert.ok(pings >= 3, `got ${pings} pings in 1.3 s`);
    assert.ok(ws.received.every((f) => f.opcode === OP.PING), `only pings: ${ws.describe()}`);
    assert.equal(ws.tcpClosed, false);
    await roundTrip(ws, 'alive');
  });

  test('the HTTP --idle-timeout and --header-timeout do not apply to an upgraded connection', async (t) => {
    const srv = await startServer(t, { args: ['--idle-timeout', '300ms', '--header-timeout', '300ms'] });
    const ws = await open(t, srv);
    assert.deepEqual(await ws.quiet(1000), [], 'nothing sent to a silent client within 1 s (ping interval 30 s)');
    assert.equal(ws.tcpClosed, false);
    await roundTrip(ws, 'still open');
  });

  test('any frame from the client counts (messages, no pongs)', async (t) => {
    const srv = await startServer(t, { args: ['--ws-ping-interval', '300ms'] });
    const ws = await open(t, srv, { path: '/v1/ws' });
    for (let i = 0; i < 12; i++) {
      await ws.sendJson({ op: 'ping', ref: i });
      await sleep(100);
    }
    const frames = await ws.quiet(0);
    const all = ws.received.concat(frames);
    assert.ok(!all.some((f) => f.opcode === OP.CLOSE), 'not closed while the client talks');
    assert.equal(ws.tcpClosed, false);
  });
});

// ---------------------------------------------------------------------------------------------
describe('12/13 compression (RFC 7692)', () => {
  test('permessage-deflate offer → accepted with both no_context_takeover parameters', async (t) => {
    const srv = await startServer(t);
    for (const [offer, path] of [[DEFLATE_OFFER, '/v1/ws'], ['permessage-deflate', RAW], ['x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=12', RAW]]) {
      const { response } = await connect(t, srv, { path, extensions: offer });
      assert.equal(response.status, 101);
      const ext = response.headers['sec-websocket-extensions'] ?? '';
      const parts = ext.split(';').map((s) => s.trim());
      assert.equal(parts[0], 'permessage-deflate', `${offer}: ${ext}`);
      assert.ok(parts.includes('server_no_context_takeover'), ext);
      assert.ok(parts.includes('client_no_context_takeover'), ext);
      assert.ok(!ext.includes(','), `exactly one extension accepted: ${ext}`);
      assert.ok(parts.every((p) => /^(permessage-deflate|server_no_context_takeover|client_no_context_takeover|(server|client)_max_window_bits(=\d+)?)$/.test(p)), ext);
    }
  });

  test('--ws-deflate off → no extension in the response; an unknown extension alone is not accepted', async (t) => {
    const off = await startServer(t, { args: ['--ws-deflate', 'off'] });
    const a = await connect(t, off, { path: RAW, extensions: DEFLATE_OFFER });
    assert.equal(a.response.status, 101);
    assert.equal(a.response.headers['sec-websocket-extensions'], undefined);
    // And RSV1 is then a protocol error.
    await a.ws.sendCompressed('hello');
    await a.ws.expectClose(1002, { strict: true });
    const on = await startServer(t);
    const b = await connect(t, on, { path: RAW, extensions: 'x-unknown-ext; foo=1' });
    assert.equal(b.response.status, 101);
    assert.equal(b.response.headers['sec-websocket-extensions'], undefined);
  });

  test('a compressed client message is accepted and published', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv, { extensions: DEFLATE_OFFER });
    assert.equal(ws.deflate, true);
    const text = 'compressed hello ' + 'abc '.repeat(50) + 'κόσμε';
    await ws.sendCompressed(text);
    const m = await ws.readText();
    assert.equal(m.text, text);
    // The same message fragmented (RSV1 on the first frame only), split across TCP writes.
    const z = deflateMessage('fragmented ' + 'xyz'.repeat(100));
    await ws.writeSplit(Buffer.concat([
      buildFrame({ payload: z.subarray(0, 5), rsv1: true, fin: false }),
      buildFrame({ opcode: OP.PING, payload: 'mid' }),
      buildFrame({ opcode: OP.CONT, payload: z.subarray(5, 9), fin: false }),
      buildFrame({ opcode: OP.CONT, payload: z.subarray(9) }),
    ]), { sizes: 7, delay: 1 });
    const pong = await ws.readFrame();
    assert.equal(pong.opcode, OP.PONG);
    assert.equal((await ws.readText()).text, 'fragmented ' + 'xyz'.repeat(100));
    // Uncompressed messages are still allowed on the same connection (RSV1 is per message).
    await ws.sendText('plain');
    assert.equal((await ws.readText()).text, 'plain');
    // An empty compressed message (a single 00 byte block).
    await ws.sendFrame({ payload: hex('00'), rsv1: true });
    assert.equal((await ws.readText()).text, '');
    const events = await stored(srv);
    assert.deepEqual(events.map((e) => e.data), [text, 'fragmented ' + 'xyz'.repeat(100), 'plain', '']);
  });

  test('server event frames arrive with RSV1 and inflate correctly (raw and JSON mode)', async (t) => {
    const srv = await startServer(t);
    const raw = await open(t, srv, { extensions: DEFLATE_OFFER });
    const json = await open(t, srv, { path: '/v1/ws', extensions: DEFLATE_OFFER, protocol: 'herald.v1' });
    await json.sendJson({ op: 'subscribe', topic: 't', ref: 's' });
    assert.equal((await json.readJson()).op, 'subscribed');
    const data = { text: 'repeat '.repeat(200), n: 42 };
    await publishOk(srv.url, 't', data);
    const m = await raw.readText();
    assert.equal(m.compressed, true, 'compressible event sent compressed');
    assert.equal(m.frames[0].rsv1, true);
    assert.deepEqual(JSON.parse(m.text), data);
    const j = await json.readText();
    assert.equal(j.compressed, true);
    const ev = JSON.parse(j.text);
    assert.equal(ev.op, 'event');
    assert.deepEqual(ev.data, data);
    // Control frames are never compressed.
    await raw.sendFrame({ opcode: OP.PING, payload: 'ping'.repeat(20) });
    const pong = await raw.readFrame();
    assert.equal(pong.opcode, OP.PONG);
    assert.equal(pong.rsv1, false);
    assert.equal(pong.payload.toString(), 'ping'.repeat(20));
  });

  test('RSV1 on a continuation frame → 1002', async (t) => {
    const srv = await startServer(t);
    const z = deflateMessage('hello hello hello');
    await failsWith(t, srv, [
      buildFrame({ payload: z.subarray(0, 4), rsv1: true, fin: false }),
      buildFrame({ opcode: OP.CONT, payload: z.subarray(4), rsv1: true }),
    ], 1002, { opts: { extensions: DEFLATE_OFFER } });
    await failsWith(t, srv, [
      buildFrame({ payload: 'plain start', fin: false }),
      buildFrame({ opcode: OP.CONT, payload: 'more', rsv1: true }),
    ], 1002, { opts: { extensions: DEFLATE_OFFER } });
    assert.deepEqual(await stored(srv), []);
  });

  test('compressed data that does not inflate → 1007; inflating to invalid UTF-8 → 1007', async (t) => {
    const srv = await startServer(t);
    await failsWith(t, srv, buildFrame({ payload: hex('ff ff ff ff ff ff'), rsv1: true }), 1007, { opts: { extensions: DEFLATE_OFFER } });
    await failsWith(t, srv, buildFrame({ payload: deflateMessage(hex('61 ed a0 80')), rsv1: true }), 1007, { opts: { extensions: DEFLATE_OFFER } });
  });

  test('compressed payloads ending on a BFINAL block, or keeping 00 00 ff ff, are accepted (RFC 7692 §7.2.3)', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv, { extensions: DEFLATE_OFFER });
    const a = 'final block '.repeat(20);
    await ws.sendFrame({ payload: zlib.deflateRawSync(Buffer.from(a)), rsv1: true }); // BFINAL=1, Z_FINISH
    assert.equal((await ws.readText()).text, a);
    const b = 'kept tail '.repeat(20);
    await ws.sendFrame({ payload: zlib.deflateRawSync(Buffer.from(b), { finishFlush: zlib.constants.Z_SYNC_FLUSH }), rsv1: true });
    assert.equal((await ws.readText()).text, b);
    const c = 'stored block';
    await ws.sendFrame({ payload: zlib.deflateRawSync(Buffer.from(c), { level: 0 }), rsv1: true });
    assert.equal((await ws.readText()).text, c);
  });

  test('an offer with server_max_window_bits=10 is accepted with it echoed; events then go uncompressed', async (t) => {
    const srv = await startServer(t);
    const { ws, response } = await connect(t, srv, { path: RAW, extensions: 'permessage-deflate; server_max_window_bits=10; client_max_window_bits' });
    assert.equal(response.status, 101);
    const parts = (response.headers['sec-websocket-extensions'] ?? '').split(';').map((x) => x.trim());
    assert.equal(parts[0], 'permessage-deflate');
    assert.ok(parts.includes('server_max_window_bits=10'), parts.join('; '));
    const text = 'window '.repeat(300);
    await ws.sendFrame({ payload: deflateMessage(text), rsv1: true });
    const m = await ws.readText();
    assert.equal(m.text, text);
    if (m.compressed) {
      // Allowed only if it fits a 10-bit window; herald's shared frames use 15 bits, so it must not.
      assert.fail('an event frame was compressed for a client that limited the server window to 10 bits');
    }
  });

  test('compressed invalid UTF-8 fails fast, before the final fragment', async (t) => {
    const srv = await startServer(t);
    const ws = await open(t, srv, { extensions: DEFLATE_OFFER });
    const z = deflateMessage(Buffer.concat([Buffer.from('valid '), hex('ED A0 80'), Buffer.alloc(3000, 0x61)]));
    await ws.sendFrame({ payload: z.subarray(0, z.length - 2), rsv1: true, fin: false });
    await ws.expectClose(1007, { strict: true, timeout: 2000 });
  });

  test('50 connections dropped mid compressed message at once: no leak, server healthy', async (t) => {
    const srv = await startServer(t);
    const clients = [];
    for (let i = 0; i < 50; i++) clients.push(await WsRaw.open(srv.port, { path: i % 2 ? RAW : '/v1/ws', extensions: DEFLATE_OFFER }));
    const z = deflateMessage('partial message '.repeat(500) + Math.random());
    await Promise.all(clients.map((c) => c.sendFrame({ payload: z.subarray(0, 200), rsv1: true, fin: false })));
    await sleep(100);
    for (const c of clients) c.destroy();
    await sleep(100);
    const ws = await open(t, srv, { extensions: DEFLATE_OFFER });
    await ws.sendCompressed('after the storm');
    assert.equal((await ws.readText()).text, 'after the storm');
    ws.destroy();
    await srv.stop(); // exit 0 and no LeakSanitizer report
  });

  test('a deflate bomb (tiny compressed payload inflating past --ws-max-message) → 1009', async (t) => {
    const srv = await startServer(t, { args: ['--ws-max-message', '64KiB'] });
    const bomb = deflateMessage('a'.repeat(8 << 20)); // 8 MiB of "a" → a few KiB
    assert.ok(bomb.length < 16384, `bomb is ${bomb.length} bytes`);
    assert.equal(inflateMessage(bomb).length, 8 << 20);
    await failsWith(t, srv, buildFrame({ payload: bomb, rsv1: true }), 1009, { opts: { extensions: DEFLATE_OFFER } });
    // Just under the limit inflates fine.
    const ws = await open(t, srv, { extensions: DEFLATE_OFFER });
    await ws.sendCompressed('b'.repeat(65536));
    assert.equal((await ws.readText()).data.length, 65536);
    // Over it by one byte.
    await failsWith(t, srv, buildFrame({ payload: deflateMessage('c'.repeat(65537)), rsv1: true }), 1009, { opts: { extensions: DEFLATE_OFFER } });
    assert.deepEqual((await stored(srv)).map((e) => e.data.length), [65536]);
  });
});

// ---------------------------------------------------------------------------------------------
describe('operation', () => {
  test('SIGTERM closes open WebSockets with 1001 (JSON and raw mode), exit 0', async (t) => {
    const srv = await startServer(t);
    const a = await open(t, srv);
    const b = await open(t, srv, { path: '/v1/ws', extensions: DEFLATE_OFFER });
    await b.sendJson({ op: 'subscribe', topic: 'x/**', ref: 1 });
    assert.equal((await b.readJson()).op, 'subscribed');
    const stopping = srv.stop();
    const [ca, cb] = await Promise.all([a.expectClose(1001, { strict: true }), b.expectClose(1001, { strict: true })]);
    assert.equal(ca.tcpClosed, true);
    assert.equal(cb.tcpClosed, true);
    const info = await stopping;
    assert.equal(info.code, 0);
  });

  test('backpressure: a client that never reads is cut off (1008); another keeps receiving', async (t) => {
    const srv = await startServer(t, { args: ['--send-buffer', '64KiB'] });
    const slow = await open(t, srv, { path: '/v1/topics/bp/ws' });
    const fast = await open(t, srv, { path: '/v1/topics/bp/ws' });
    slow.pause();
    const N = 400;
    const size = 32 * 1024;
    let fastGot = 0;
    const fastReading = (async () => {
      while (fastGot < N) {
        const m = await fast.readText(20000);
        assert.equal(m.data.length, size);
        assert.equal(m.text.slice(0, 8), `${String(fastGot).padStart(7, '0')}-`);
        fastGot++;
      }
    })();
    for (let i = 0; i < N; i++) {
      await publishOk(srv.url, 'bp', `${String(i).padStart(7, '0')}-`.padEnd(size, 'z'), { contentType: 'text/plain' });
    }
    await fastReading;
    assert.equal(fastGot, N, 'the reading client got every event');
    assert.equal(fast.tcpClosed, false);
    slow.resume();
    const c = await slow.expectClose(1008, { timeout: 10000 });
    const slowGot = c.skipped.filter((f) => f.opcode === OP.TEXT).length;
    assert.ok(slowGot < N, `the slow client was cut off after ${slowGot} of ${N} events`);
    assert.equal(c.tcpClosed, true);
  });
});

// The parse helper is exercised here so a broken library fails loudly.
test('ws_raw self-check: frames build and parse', () => {
  const f = buildFrame({ opcode: OP.TEXT, payload: 'abc', maskKey: Buffer.from([1, 2, 3, 4]) });
  assert.equal(f.toString('hex'), '818301020304' + Buffer.from([0x61 ^ 1, 0x62 ^ 2, 0x63 ^ 3]).toString('hex'));
  assert.equal(buildFrame({ payload: 'a'.repeat(126), mask: false }).subarray(0, 4).toString('hex'), '817e007e');
  assert.deepEqual(parseClose(closePayload(1000, 'x')), { code: 1000, reason: 'x', reasonBytes: Buffer.from('x') });
});
