// SPEC §9 access: secure-by-default listening, API keys, HS256 subscriber/publisher tokens on
// every transport (polling, long poll, SSE, EventSource, WebSocket JSON and raw), CORS and the
// WebSocket Origin check. The browser preflight test is in access_browser.test.mjs.
//
// Rules under test: 401 `unauthorized` (with WWW-Authenticate: Bearer) when no valid credential
// was presented, 403 `forbidden` when a valid one does not cover the topic or action.
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { EventSource } from 'eventsource';
import { sanitizerReport, spawnHerald, runHerald, freshDataDir, startServer, test } from './lib/server.mjs';
import { RawConn, assertError, get, openSse, publish, publishOk, request, sleep, waitFor } from './lib/http.mjs';
import { WsRaw, OP } from './lib/ws_raw.mjs';
import { confusedRs256Token, heraldToken, hs256, noneToken, now, rs256Token, tamperPayload } from './lib/jwt.mjs';
import { rmSync } from 'node:fs';

const SECRET = 'e2e-jwt-secret-0123456789-abcdefghijklmnop'; // ≥ 32 bytes: no short-secret warning
const KEY = 'e2e-admin-key-1';
const KEY2 = 'e2e-admin-key-2';
const bearer = (token) => ({ Authorization: `Bearer ${token}` });

/** 401 unauthorized: exact JSON body {error, message} and the Bearer challenge. */
function assert401(res, context = '') {
  assertError(res, 401, 'unauthorized', { context });
  assert.match(res.headers['www-authenticate'] ?? '', /^Bearer\b/, `WWW-Authenticate on 401 (${context})`);
}

function assert403(res, context = '') {
  assertError(res, 403, 'forbidden', { context });
}

/** Events stored in a topic, read with a credential that allows it. */
async function stored(srv, topic, headers = {}) {
  const r = await get(`${srv.url}/v1/topics/${topic}/events?since=0&limit=1000`, { headers });
  assert.equal(r.status, 200, `poll ${topic}: ${r.status} ${r.text}`);
  return r.json.events;
}

/** herald serve with keys and JWTs (the usual set-up of this file). */
function secured(t, extra = []) {
  return startServer(t, { args: ['--api-key', KEY, '--jwt-secret', SECRET, ...extra] });
}

async function wsOpen(t, srv, opts) {
  const ws = await WsRaw.open(srv.port, opts);
  t.after(() => ws.destroy());
  return ws;
}

/** Sends one JSON op and reads replies until the one with this ref (events in between are kept). */
async function wsOp(ws, msg, timeout = 5000) {
  ws.sendJson(msg);
  const deadline = Date.now() + timeout;
  for (;;) {
    const m = await ws.readJson(Math.max(1, deadline - Date.now()));
    if (m.ref === msg.ref) return m;
    (ws.pending ??= []).push(m);
  }
}

/** The next {"op":"event"} (from what wsOp set aside first). */
async function wsEvent(ws, timeout = 5000) {
  if (ws.pending?.length) {
    const i = ws.pending.findIndex((m) => m.op === 'event');
    if (i >= 0) return ws.pending.splice(i, 1)[0];
  }
  const deadline = Date.now() + timeout;
  for (;;) {
    const m = await ws.readJson(Math.max(1, deadline - Date.now()));
    if (m.op === 'event') return m;
    (ws.pending ??= []).push(m);
  }
}

function assertWsError(m, ref, code) {
  assert.equal(m.op, 'error', JSON.stringify(m));
  assert.equal(m.ref, ref, JSON.stringify(m));
  assert.equal(m.code, code, JSON.stringify(m));
  assert.equal(typeof m.message, 'string');
  assert.ok(m.message.length > 0);
}

// ---------------------------------------------------------------------------------------------
// Secure by default: where herald listens without keys.

/** Runs `herald serve --listen <listen> …` until it prints its address; returns the child. */
async function spawnListening(t, listen, args = [], env = {}) {
  const dir = freshDataDir();
  const h = spawnHerald(['serve', '--listen', listen, '--data', dir, ...args], { env });
  t.after(async () => {
    if (h.child.exitCode === null && h.child.signalCode === null) {
      h.child.kill('SIGKILL');
      await h.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const line = await waitFor(() => /herald listening on http:\/\/(\S+):(\d+)/.exec(h.stdout), {
    timeout: 15000,
    message: `"herald listening" from herald --listen ${listen} (stderr: ${h.stderr})`,
  }).catch(async (e) => {
    e.message += `\nstdout: ${h.stdout}\nstderr: ${h.stderr}`;
    throw e;
  });
  h.port = Number(line[2]);
  h.host = line[1];
  return h;
}

async function stopSpawned(h) {
  h.child.kill('SIGTERM');
  const info = await h.exited;
  assert.ok(!sanitizerReport(h.stderr), `sanitizer report:\n${h.stderr}`);
  assert.deepEqual(info, { code: 0, signal: null }, h.stderr);
}

describe('secure by default', () => {
  test('no keys: open on loopback, with a warning on stderr', async (t) => {
    const srv = await startServer(t);
    assert.match(srv.stderr, /warning/i);
    assert.match(srv.stderr, /no API keys/i);
    assert.match(srv.stderr, /loopback/i);
    const rec = await publishOk(srv.url, 'open/topic', { a: 1 });
    const r = await get(`${srv.url}/v1/topics/open/topic/events?since=0`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.events.map((e) => e.id), [rec.id]);
    const sse = await openSse(`${srv.url}/v1/topics/open/topic/stream`);
    assert.equal(sse.status, 200);
    sse.close();
    // Management is open too (not 401/403, whatever the endpoint answers).
    for (const p of ['/v1/webhooks', '/v1/sources']) {
      const m = await get(`${srv.url}${p}`);
      assert.ok(![401, 403].includes(m.status), `${p} without keys answered ${m.status}`);
    }
  });

  for (const listen of ['0.0.0.0:0', '[::]:0']) {
    test(`--listen ${listen} without keys: exit status 2 and a clear message`, async () => {
      const dir = freshDataDir();
      try {
        const r = await runHerald(['serve', '--listen', listen, '--data', dir]);
        assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
        assert.doesNotMatch(r.stdout, /herald listening/);
        assert.ok(!sanitizerReport(r.stderr), r.stderr);
        assert.match(r.stderr, /API key|--api-key/i, r.stderr);
        assert.match(r.stderr, /--insecure/, r.stderr);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test('HERALD_LISTEN=0.0.0.0:0 without keys: exit status 2 as well', async () => {
    const dir = freshDataDir();
    try {
      const r = await runHerald(['serve', '--data', dir], { env: { HERALD_LISTEN: '0.0.0.0:0' } });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /--insecure/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--listen 0.0.0.0:0 --insecure starts (with a warning) and serves', async (t) => {
    const h = await spawnListening(t, '0.0.0.0:0', ['--insecure']);
    assert.match(h.stderr, /warning/i);
    assert.match(h.stderr, /insecure|no API keys/i);
    const r = await publish(`http://127.0.0.1:${h.port}`, 'x', { a: 1 });
    assert.equal(r.status, 201, r.text);
    await stopSpawned(h);
  });

  test('--listen 0.0.0.0:0 with a key starts without --insecure; publishing then needs the key', async (t) => {
    const h = await spawnListening(t, '0.0.0.0:0', ['--api-key', KEY]);
    const base = `http://127.0.0.1:${h.port}`;
    assert401(await publish(base, 'x', { a: 1 }));
    assert.equal((await publish(base, 'x', { a: 1 }, { headers: bearer(KEY) })).status, 201);
    await stopSpawned(h);
  });

  // auth.h: an empty item ("a,,b", "a,", or a blank list) is rejected. A refusal at start is a
  // clean exit 2 (no leak report either).
  for (const [what, args, env, re] of [
    ['HERALD_API_KEYS=a,,b', [], { HERALD_API_KEYS: 'a,,b' }, /HERALD_API_KEYS/],
    ['HERALD_API_KEYS=" , "', [], { HERALD_API_KEYS: ' , ' }, /HERALD_API_KEYS/],
    ['HERALD_API_KEYS=a,', [], { HERALD_API_KEYS: 'a,' }, /HERALD_API_KEYS/],
    ['--api-key "a b"', ['--api-key', 'a b'], {}, /API key/],
    ['--api-key a --no-such-flag', ['--api-key', 'a', '--no-such-flag'], {}, /no-such-flag/],
    ['--cors-origin "not an origin"', ['--cors-origin', 'not an origin'], {}, /CORS origin/],
    ['--cors-origin http://a.test --no-such-flag', ['--cors-origin', 'http://a.test', '--no-such-flag'], {}, /no-such-flag/],
  ]) {
    test(`refused at start with exit 2: ${what}`, async () => {
      const dir = freshDataDir();
      try {
        const r = await runHerald(['serve', '--listen', '127.0.0.1:0', '--data', dir, ...args], { env, timeout: 5000 }).catch((e) => ({ code: 'timeout', stderr: e.message }));
        assert.ok(!sanitizerReport(r.stderr), `sanitizer report:\n${r.stderr}`);
        assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
        assert.match(r.stderr, re);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// API keys.

describe('API keys', () => {
  test('publishing: none / wrong / right key, in the header and in ?token=', async (t) => {
    const srv = await startServer(t, { args: ['--api-key', KEY] });
    assert.match(srv.stderr, /no --jwt-secret/, 'a note that subscribing stays open');
    const url = `${srv.url}/v1/topics/k/events`;
    const body = '{"n":1}';
    const h = { 'Content-Type': 'application/json' };
    assert401(await request(url, { method: 'POST', headers: h, body }), 'no key');
    assert401(await request(url, { method: 'POST', headers: { ...h, ...bearer('wrong') }, body }), 'wrong key');
    assert401(await request(url, { method: 'POST', headers: { ...h, ...bearer(`${KEY}x`) }, body }), 'key + 1 byte');
    assert401(await request(url, { method: 'POST', headers: { ...h, ...bearer(KEY.slice(0, -1)) }, body }), 'key - 1 byte');
    assert401(await request(url, { method: 'POST', headers: { ...h, Authorization: `Basic ${Buffer.from(`u:${KEY}`).toString('base64')}` }, body }), 'Basic');
    assert401(await request(url, { method: 'POST', headers: { ...h, Authorization: KEY }, body }), 'no scheme');
    assert401(await request(url, { method: 'POST', headers: { ...h, Authorization: 'Bearer' }, body }), 'Bearer without token');
    assert401(await request(`${url}?token=wrong`, { method: 'POST', headers: h, body }), '?token=wrong');
    assert401(await request(url, { method: 'POST', headers: { ...h, Cookie: `herald_token=wrong` }, body }), 'cookie wrong');
    assert.deepEqual(await stored(srv, 'k'), [], 'nothing stored by refused requests');

    const ok = [
      { headers: { ...h, ...bearer(KEY) } },
      { headers: { ...h, Authorization: `bearer ${KEY}` } }, // the scheme is case-insensitive
      { headers: { ...h, Authorization: `Bearer   ${KEY}` } },
      { headers: h, query: `?token=${encodeURIComponent(KEY)}` },
    ];
    for (const [i, o] of ok.entries()) {
      const r = await request(`${url}${o.query ?? ''}`, { method: 'POST', headers: o.headers, body: `{"n":${i}}` });
      assert.equal(r.status, 201, `variant ${i}: ${r.status} ${r.text}`);
    }
    assert.deepEqual((await stored(srv, 'k')).map((e) => e.data.n), [0, 1, 2, 3]);
    // A cookie rides along with any request a browser makes (CSRF): it never carries an API key.
    assert401(await request(url, { method: 'POST', headers: { ...h, Cookie: `a=b; herald_token=${KEY}` }, body: '{"n":9}' }),
      'a key in the cookie');
  });

  test('repeatable --api-key: each key works', async (t) => {
    const srv = await startServer(t, { args: ['--api-key', KEY, '--api-key', KEY2] });
    assert.equal((await publish(srv.url, 'k', { a: 1 }, { headers: bearer(KEY) })).status, 201);
    assert.equal((await publish(srv.url, 'k', { a: 2 }, { headers: bearer(KEY2) })).status, 201);
    assert401(await publish(srv.url, 'k', { a: 3 }, { headers: bearer('e2e-admin-key-3') }));
  });

  test('HERALD_API_KEYS: a comma-separated list (items trimmed)', async (t) => {
    const srv = await startServer(t, { env: { HERALD_API_KEYS: `alpha-key, beta-key ,gamma-key` } });
    assert.doesNotMatch(srv.stderr, /no API keys/);
    for (const k of ['alpha-key', 'beta-key', 'gamma-key']) {
      const r = await publish(srv.url, 'env', { k }, { headers: bearer(k) });
      assert.equal(r.status, 201, `${k}: ${r.text}`);
    }
    // (Spaces around a header value are not part of it in HTTP; ?token= keeps them.)
    assert401(await request(`${srv.url}/v1/topics/env/events?token=%20beta-key%20`, { method: 'POST', body: '{}' }));
    assert401(await publish(srv.url, 'env', { k: 0 }, { headers: bearer('alpha-key,beta-key') }));
    assert401(await publish(srv.url, 'env', { k: 0 }));
    assert.equal((await stored(srv, 'env')).length, 3);
  });

  test('batch publishing (POST /v1/events) needs a key', async (t) => {
    const srv = await startServer(t, { args: ['--api-key', KEY] });
    const body = JSON.stringify({ events: [{ topic: 'b1', data: 1 }, { topic: 'b2', data: 2 }] });
    const h = { 'Content-Type': 'application/json' };
    assert401(await request(`${srv.url}/v1/events`, { method: 'POST', headers: h, body }));
    assert401(await request(`${srv.url}/v1/events`, { method: 'POST', headers: { ...h, ...bearer('nope') }, body }));
    const r = await request(`${srv.url}/v1/events`, { method: 'POST', headers: { ...h, ...bearer(KEY) }, body });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.ids.length, 2);
  });

  test('keep-alive: a credential (and CORS answer) of one request never carries over to the next', async (t) => {
    const srv = await secured(t, ['--cors-origin', 'http://app.test']);
    const token = heraldToken(SECRET, { subscribe: ['ka'] });
    const c = await RawConn.connect(srv.port);
    t.after(() => c.destroy());
    const req = (method, path, headers = {}, body = '') =>
      `${method} ${path} HTTP/1.1\r\nHost: x\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}` +
      `${method === 'POST' ? `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` : ''}\r\n${body}`;
    await c.write(
      req('POST', '/v1/topics/ka/events', { Authorization: `Bearer ${KEY}`, Origin: 'http://app.test' }, '{"n":1}') +
        req('POST', '/v1/topics/ka/events', {}, '{"n":2}') +
        req('GET', '/v1/topics/ka/events?since=0', { Cookie: `herald_token=${token}` }) +
        req('GET', '/v1/topics/ka/events?since=0') +
        req('GET', `/v1/topics/ka/events?since=0&token=${KEY}`) +
        req('GET', '/v1/topics/ka/events?since=0'),
    );
    const rs = [];
    for (let i = 0; i < 6; i++) rs.push(await c.readResponse());
    assert.deepEqual(rs.map((r) => r.status), [201, 401, 200, 401, 200, 401]);
    assert.equal(rs[0].headers['access-control-allow-origin'], 'http://app.test');
    assert.equal(rs[1].headers['access-control-allow-origin'], undefined, 'no Origin on the 2nd request');
    assert.equal(rs[1].json.error, 'unauthorized');
    assert.deepEqual(await stored(srv, 'ka', bearer(KEY)).then((e) => e.map((x) => x.data)), [{ n: 1 }]);
  });

  test('management (/v1/webhooks, /v1/sources) needs a key', async (t) => {
    const srv = await secured(t);
    const jwt = heraldToken(SECRET, { subscribe: ['**'], publish: ['**'] });
    for (const p of ['/v1/webhooks', '/v1/sources']) {
      assert401(await get(`${srv.url}${p}`), `${p} no credential`);
      assert401(await get(`${srv.url}${p}`, { headers: bearer('wrong') }), `${p} wrong key`);
      assert401(
        await request(`${srv.url}${p}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }),
        `POST ${p} no credential`,
      );
      // A valid JWT is a credential, but not an admin one, whatever it claims.
      assert403(await get(`${srv.url}${p}`, { headers: bearer(jwt) }), `${p} with a JWT`);
      const ok = await get(`${srv.url}${p}`, { headers: bearer(KEY) });
      assert.ok(![401, 403].includes(ok.status), `${p} with the key answered ${ok.status}`);
    }
  });

  test('keys without --jwt-secret: subscribing stays open on every transport; WebSocket publish needs the key', async (t) => {
    const srv = await startServer(t, { args: ['--api-key', KEY] });
    await publishOk(srv.url, 'open/s', { a: 1 }, { headers: bearer(KEY) });
    assert.equal((await get(`${srv.url}/v1/topics/open/s/events?since=0`)).status, 200);
    assert.equal((await get(`${srv.url}/v1/events?topic=open/*&since=0`)).status, 200);
    const sse = await openSse(`${srv.url}/v1/topics/open/s/stream`);
    assert.equal(sse.status, 200);
    sse.close();
    const ws = await wsOpen(t, srv, { path: '/v1/ws' });
    const sub = await wsOp(ws, { op: 'subscribe', topic: 'open/*', ref: 's' });
    assert.equal(sub.op, 'subscribed');
    assertWsError(await wsOp(ws, { op: 'publish', topic: 'open/s', data: 1, ref: 'p' }), 'p', 'unauthorized');
    assert.equal((await wsOp(ws, { op: 'ping', ref: 'after' })).op, 'pong', 'the connection stays');
    const wsk = await wsOpen(t, srv, { path: `/v1/ws?token=${KEY}` });
    const ack = await wsOp(wsk, { op: 'publish', topic: 'open/s', data: 2, ref: 'p2' });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    const ev = await wsEvent(ws);
    assert.equal(ev.id, ack.id);
    const wsh = await wsOpen(t, srv, { path: '/v1/ws', headers: bearer(KEY) });
    assert.equal((await wsOp(wsh, { op: 'publish', topic: 'open/s', data: 3, ref: 'p3' })).op, 'ack');
    assert.deepEqual((await stored(srv, 'open/s')).map((e) => e.data), [{ a: 1 }, 2, 3]);
  });

  test('a key allows subscribing when tokens are required: poll, long poll, SSE, WebSocket', async (t) => {
    const srv = await secured(t);
    await publishOk(srv.url, 'any/t', { a: 1 }, { headers: bearer(KEY) });
    assert.equal((await get(`${srv.url}/v1/topics/any/t/events?since=0`, { headers: bearer(KEY) })).status, 200);
    assert.equal((await get(`${srv.url}/v1/events?topic=**&since=0&token=${KEY}`)).status, 200);
    const lp = get(`${srv.url}/v1/topics/any/t/events?since=1&wait=5&token=${KEY}`);
    await sleep(100);
    await publishOk(srv.url, 'any/t', { a: 2 }, { headers: bearer(KEY) });
    const lr = await lp;
    assert.equal(lr.status, 200, lr.text);
    assert.deepEqual(lr.json.events.map((e) => e.data), [{ a: 2 }]);
    const sse = await openSse(`${srv.url}/v1/stream?topic=**&token=${KEY}`);
    assert.equal(sse.status, 200);
    sse.close();
    const ws = await wsOpen(t, srv, { path: '/v1/ws', headers: bearer(KEY) });
    assert.equal((await wsOp(ws, { op: 'subscribe', topic: '**', ref: '1' })).op, 'subscribed');
    const raw = await wsOpen(t, srv, { path: `/v1/topics/any/t/ws?token=${KEY}` });
    raw.sendText('from raw');
    const m = await raw.readText();
    assert.equal(m.text, 'from raw');
  });
});

// ---------------------------------------------------------------------------------------------
// JWTs.

describe('JWT subscriber tokens', () => {
  test('invalid tokens are 401 on polling: alg none, RS256, bad signature, expired, nbf, no exp, malformed', async (t) => {
    const srv = await secured(t);
    const claims = { sub: 'x', exp: now() + 3600, herald: { subscribe: ['**'] } };
    const cases = {
      'alg none, empty signature': noneToken(claims),
      'alg none with an HMAC signature': hs256(claims, SECRET, { header: { alg: 'none', typ: 'JWT' } }),
      'alg "hs256" (wrong case)': hs256(claims, SECRET, { header: { alg: 'hs256', typ: 'JWT' } }),
      'alg HS512 header': hs256(claims, SECRET, { header: { alg: 'HS512', typ: 'JWT' } }),
      'no alg': hs256(claims, SECRET, { header: { typ: 'JWT' } }),
      'RS256, genuinely signed': rs256Token(claims),
      'RS256 header, HMAC-signed with the secret (algorithm confusion)': confusedRs256Token(claims, SECRET),
      'signed with another secret': hs256(claims, `${SECRET}-other`),
      'signed with the secret minus its last byte': hs256(claims, SECRET.slice(0, -1)),
      'payload altered after signing': tamperPayload(hs256({ ...claims, herald: { subscribe: ['a'] } }, SECRET), claims),
      'signature dropped': hs256(claims, SECRET).split('.').slice(0, 2).join('.') + '.',
      'two parts': hs256(claims, SECRET).split('.').slice(0, 2).join('.'),
      'expired 10 s ago': hs256({ ...claims, exp: now() - 10 }, SECRET),
      'exp now': hs256({ ...claims, exp: now() - 1 }, SECRET),
      'nbf 60 s ahead': hs256({ ...claims, nbf: now() + 60 }, SECRET),
      'no exp': hs256({ sub: 'x', herald: { subscribe: ['**'] } }, SECRET),
      'exp as a string': hs256({ ...claims, exp: String(now() + 3600) }, SECRET),
      'herald claim not an object': hs256({ ...claims, herald: ['**'] }, SECRET),
      'subscribe not an array': hs256({ ...claims, herald: { subscribe: '**' } }, SECRET),
      'an invalid pattern in the claim': hs256({ ...claims, herald: { subscribe: ['a//b'] } }, SECRET),
      'payload not JSON': hs256('not json', SECRET),
      'garbage': 'abc.def.ghi',
      'not a JWT at all': 'hello',
    };
    const url = `${srv.url}/v1/topics/t/events`;
    for (const [name, token] of Object.entries(cases)) {
      assert401(await get(url, { headers: bearer(token) }), `${name} (header)`);
      assert401(await get(`${url}?token=${encodeURIComponent(token)}`), `${name} (?token=)`);
      if (!/[",;\\ ]/.test(token)) assert401(await get(url, { headers: { Cookie: `herald_token=${token}` } }), `${name} (cookie)`);
    }
    assert401(await get(url), 'no token at all');
    // A valid token with the same claims passes: the cases above failed for the stated reason.
    assert.equal((await get(url, { headers: bearer(hs256(claims, SECRET)) })).status, 200);
    assert.equal((await get(url, { headers: bearer(hs256({ ...claims, nbf: now() - 5, iat: now() - 5 }, SECRET)) })).status, 200);
  });

  test('a token expiring in 2 s works, then is refused once expired', async (t) => {
    const srv = await secured(t);
    const token = heraldToken(SECRET, { subscribe: ['t'], exp: now() + 2 });
    assert.equal((await get(`${srv.url}/v1/topics/t/events`, { headers: bearer(token) })).status, 200);
    await sleep(3100);
    assert401(await get(`${srv.url}/v1/topics/t/events`, { headers: bearer(token) }), 'after exp');
  });

  test('a valid token for another topic: 403 forbidden', async (t) => {
    const srv = await secured(t);
    const token = heraldToken(SECRET, { subscribe: ['orders/123'] });
    assert.equal((await get(`${srv.url}/v1/topics/orders/123/events`, { headers: bearer(token) })).status, 200);
    assert403(await get(`${srv.url}/v1/topics/orders/124/events`, { headers: bearer(token) }));
    assert403(await get(`${srv.url}/v1/topics/orders/123/x/events`, { headers: bearer(token) }));
    assert403(await get(`${srv.url}/v1/topics/orders/events`, { headers: bearer(token) }));
    // No subscribe claim at all: nothing to subscribe.
    const pubOnly = heraldToken(SECRET, { publish: ['orders/123'] });
    assert403(await get(`${srv.url}/v1/topics/orders/123/events`, { headers: bearer(pubOnly) }));
    const empty = heraldToken(SECRET, {});
    assert403(await get(`${srv.url}/v1/topics/orders/123/events`, { headers: bearer(empty) }));
  });

  test('pattern coverage: a claim covers a request only when it matches every topic the request can', async (t) => {
    const srv = await secured(t);
    // [claims, requested topic or pattern, allowed]
    const table = [
      [['orders/**'], 'orders/*', true],
      [['orders/**'], 'orders/**', true],
      [['orders/**'], 'orders/1', true],
      [['orders/**'], 'orders/1/items', true],
      [['orders/**'], 'orders/*/items', true],
      [['orders/**'], 'orders/1/**', true],
      [['orders/**'], 'orders', false],
      [['orders/**'], '**', false],
      [['orders/**'], '*/1', false],
      [['orders/**'], 'other/1', false],
      [['orders/*'], 'orders/1', true],
      [['orders/*'], 'orders/*', true],
      [['orders/*'], 'orders/**', false],
      [['orders/*'], 'orders/1/items', false],
      [['orders/*'], 'orders/*/items', false],
      [['orders/*'], '*/1', false],
      [['orders/*'], 'orders', false],
      [['orders/123'], 'orders/123', true],
      [['orders/123'], 'orders/*', false],
      [['orders/123'], 'orders/**', false],
      [['*/status'], 'a/status', true],
      [['*/status'], '*/status', true],
      [['*/status'], 'a/*', false],
      [['*/status'], 'a/status/x', false],
      [['a/*/c'], 'a/b/c', true],
      [['a/*/c'], 'a/*/c', true],
      [['a/*/c'], 'a/b/*', false],
      [['**'], 'anything/at/all', true],
      [['**'], '**', true],
      [['**'], '*', true],
      [['*'], 'x', true],
      [['*'], 'x/y', false],
      [['*'], '**', false],
      [['a/1', 'a/2'], 'a/*', false], // two names do not cover a wildcard
      [['a/1', 'b/**'], 'b/x/y', true],
    ];
    const failures = [];
    for (const [claims, requested, allowed] of table) {
      const token = heraldToken(SECRET, { subscribe: claims });
      const r = await get(`${srv.url}/v1/events?topic=${encodeURIComponent(requested)}`, { headers: bearer(token) });
      const want = allowed ? 200 : 403;
      if (r.status !== want) failures.push(`claims ${JSON.stringify(claims)} request ${requested}: ${r.status} (want ${want}) ${r.text}`);
      else if (!allowed) assert403(r, `${claims} / ${requested}`);
      // The single-topic endpoint agrees for plain names.
      if (!requested.includes('*')) {
        const r2 = await get(`${srv.url}/v1/topics/${requested}/events`, { headers: bearer(token) });
        if (r2.status !== want) failures.push(`claims ${JSON.stringify(claims)} /v1/topics/${requested}: ${r2.status} (want ${want})`);
      }
    }
    assert.deepEqual(failures, []);
  });

  test('several topics in one request: all must be covered', async (t) => {
    const srv = await secured(t);
    const token = heraldToken(SECRET, { subscribe: ['a/*', 'b'] });
    assert.equal((await get(`${srv.url}/v1/events?topic=a/1&topic=b&topic=a/*`, { headers: bearer(token) })).status, 200);
    assert403(await get(`${srv.url}/v1/events?topic=a/1&topic=c`, { headers: bearer(token) }));
    assert403(await get(`${srv.url}/v1/events?topic=c&topic=a/1`, { headers: bearer(token) }));
    const sse = await openSse(`${srv.url}/v1/stream?topic=a/1&topic=c`, { headers: bearer(token) });
    assert.equal(sse.status, 403);
    assert.equal(sse.json?.error, 'forbidden');
  });

  test('token sources: Authorization, ?token=, cookie herald_token (among others, quoted)', async (t) => {
    const srv = await secured(t);
    await publishOk(srv.url, 'src', { a: 1 }, { headers: bearer(KEY) });
    const token = heraldToken(SECRET, { subscribe: ['src'] });
    const url = `${srv.url}/v1/topics/src/events?since=0`;
    const variants = {
      header: { headers: bearer(token) },
      query: { url: `${url}&token=${token}` },
      cookie: { headers: { Cookie: `herald_token=${token}` } },
      'cookie among others': { headers: { Cookie: `theme=dark; herald_token=${token}; other=1` } },
      'quoted cookie': { headers: { Cookie: `herald_token="${token}"` } },
      'valid header, unrelated garbage cookie': { headers: { ...bearer(token), Cookie: 'herald_token=garbage' } },
    };
    for (const [name, v] of Object.entries(variants)) {
      const r = await get(v.url ?? url, { headers: v.headers ?? {} });
      assert.equal(r.status, 200, `${name}: ${r.status} ${r.text}`);
      assert.equal(r.json.events.length, 1, name);
    }
    assert401(await get(url, { headers: { Cookie: `other_token=${token}` } }), 'a cookie of another name');
    assert401(await get(`${url}&tok=${token}`), 'another parameter name');
  });

  test('long poll: 401/403 at once; a permitted long poll waits and gets the event', async (t) => {
    const srv = await secured(t);
    const token = heraldToken(SECRET, { subscribe: ['lp/*'] });
    let r = await get(`${srv.url}/v1/topics/lp/1/events?since=0&wait=10`);
    assert401(r);
    assert.ok(r.ms < 2000, `401 answered at once, took ${r.ms} ms`);
    r = await get(`${srv.url}/v1/topics/other/events?since=0&wait=10`, { headers: bearer(token) });
    assert403(r);
    assert.ok(r.ms < 2000, `403 answered at once, took ${r.ms} ms`);
    r = await get(`${srv.url}/v1/events?topic=lp/**&since=0&wait=10`, { headers: bearer(token) });
    assert403(r, 'lp/** is wider than lp/*');

    const waiting = get(`${srv.url}/v1/events?topic=lp/*&since=0&wait=10&token=${token}`);
    await sleep(200);
    const rec = await publishOk(srv.url, 'lp/7', { hello: 'lp' }, { headers: bearer(KEY) });
    r = await waiting;
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.events.map((e) => [e.id, e.data]), [[rec.id, { hello: 'lp' }]]);
    assert.ok(r.ms >= 150 && r.ms < 5000, `held until the event (${r.ms} ms)`);
  });

  test('SSE: 401 / 403 as JSON; a permitted stream via header, ?token= and cookie receives events', async (t) => {
    const srv = await secured(t);
    const token = heraldToken(SECRET, { subscribe: ['news/*'] });
    let s = await openSse(`${srv.url}/v1/topics/news/a/stream`);
    assert.equal(s.status, 401);
    assert.deepEqual(Object.keys(s.json).sort(), ['error', 'message']);
    assert.equal(s.json.error, 'unauthorized');
    assert.match(s.headers['www-authenticate'] ?? '', /^Bearer/);
    s = await openSse(`${srv.url}/v1/topics/news/a/stream`, { headers: bearer(hs256({ exp: now() - 5, herald: { subscribe: ['**'] } }, SECRET)) });
    assert.equal(s.status, 401);
    s = await openSse(`${srv.url}/v1/topics/sport/a/stream`, { headers: bearer(token) });
    assert.equal(s.status, 403);
    assert.equal(s.json.error, 'forbidden');
    s = await openSse(`${srv.url}/v1/stream?topic=news/**&token=${token}`);
    assert.equal(s.status, 403, 'news/** is wider than the news/* claim');

    const streams = [
      await openSse(`${srv.url}/v1/topics/news/a/stream`, { headers: bearer(token) }),
      await openSse(`${srv.url}/v1/topics/news/a/stream?token=${token}`),
      await openSse(`${srv.url}/v1/stream?topic=news/*`, { headers: { Cookie: `herald_token=${token}` } }),
    ];
    t.after(() => streams.forEach((x) => x.close()));
    for (const x of streams) {
      assert.equal(x.status, 200);
      await x.waitItem((i) => i.kind === 'retry', 5000, 'retry');
    }
    const rec = await publishOk(srv.url, 'news/a', { headline: 'hi' }, { headers: bearer(KEY) });
    for (const x of streams) {
      const [ev] = await x.waitEvents(1);
      assert.equal(ev.id, rec.id);
      assert.deepEqual(JSON.parse(ev.data), { headline: 'hi' });
    }
  });

  test('EventSource with ?token= receives events; without a token it fails and does not open', async (t) => {
    const srv = await secured(t);
    const token = heraldToken(SECRET, { subscribe: ['es/*'] });
    const es = new EventSource(`${srv.url}/v1/topics/es/1/stream?token=${encodeURIComponent(token)}`);
    t.after(() => es.close());
    const got = [];
    let opened = false;
    es.onopen = () => (opened = true);
    es.onmessage = (e) => got.push([e.lastEventId, JSON.parse(e.data)]);
    await waitFor(() => opened, { message: 'EventSource open' });
    const rec = await publishOk(srv.url, 'es/1', { via: 'eventsource' }, { headers: bearer(KEY) });
    await waitFor(() => got.length === 1, { message: 'the event on EventSource' });
    assert.deepEqual(got, [[rec.id, { via: 'eventsource' }]]);

    const bad = new EventSource(`${srv.url}/v1/topics/es/1/stream`);
    t.after(() => bad.close());
    let badOpened = false;
    let errorInfo = null;
    bad.onopen = () => (badOpened = true);
    bad.onerror = (e) => (errorInfo ??= { code: e.code, state: bad.readyState });
    await waitFor(() => errorInfo !== null, { message: 'error on the EventSource without token' });
    assert.equal(badOpened, false);
    assert.equal(errorInfo.code, 401);
    await sleep(100);
    assert.equal(bad.readyState, EventSource.CLOSED, 'a 401 is not retried');
    const forbidden = new EventSource(`${srv.url}/v1/topics/other/stream?token=${encodeURIComponent(token)}`);
    t.after(() => forbidden.close());
    let fErr = null;
    forbidden.onerror = (e) => (fErr ??= e.code);
    await waitFor(() => fErr !== null, { message: 'error on the forbidden EventSource' });
    assert.equal(fErr, 403);
  });

  test('JWT only (no keys): publishing is open, subscribing needs a token', async (t) => {
    const srv = await startServer(t, { args: ['--jwt-secret', SECRET] });
    assert.match(srv.stderr, /no API keys/i);
    await publishOk(srv.url, 'j', { a: 1 });
    assert401(await get(`${srv.url}/v1/topics/j/events?since=0`));
    const token = heraldToken(SECRET, { subscribe: ['j'] });
    assert.equal((await get(`${srv.url}/v1/topics/j/events?since=0`, { headers: bearer(token) })).json.events.length, 1);
  });

  test('a short --jwt-secret is warned about', async (t) => {
    const srv = await startServer(t, { args: ['--api-key', KEY, '--jwt-secret', 'short'] });
    assert.match(srv.stderr, /jwt-secret.*32|32.*jwt-secret/i);
  });
});

// ---------------------------------------------------------------------------------------------
// WebSocket.

describe('WebSocket access', () => {
  test('handshake without a valid token: 401 JSON (JSON and raw endpoints); with one: 101', async (t) => {
    const srv = await secured(t);
    const token = heraldToken(SECRET, { subscribe: ['room/*'] });
    const refused = [
      { path: '/v1/ws' },
      { path: '/v1/ws', headers: bearer('not-a-token') },
      { path: `/v1/ws?token=${noneToken({ exp: now() + 60, herald: { subscribe: ['**'] } })}` },
      { path: '/v1/ws', headers: { Cookie: `herald_token=${hs256({ exp: now() - 1, herald: { subscribe: ['**'] } }, SECRET)}` } },
      { path: '/v1/topics/room/1/ws' },
      { path: '/v1/topics/room/1/ws?token=bad' },
    ];
    for (const o of refused) {
      const { ws, response } = await WsRaw.connect(srv.port, o);
      ws.destroy();
      assert401(response, JSON.stringify(o));
    }
    for (const o of [
      { path: `/v1/ws?token=${token}` },
      { path: '/v1/ws', headers: bearer(token) },
      { path: '/v1/ws', headers: { Cookie: `herald_token=${token}` } },
      { path: `/v1/topics/room/1/ws?token=${token}` },
    ]) {
      const ws = await WsRaw.open(srv.port, o);
      ws.destroy();
    }
    // Raw mode is one subscription: a topic outside the claims is 403 at the handshake.
    const { ws, response } = await WsRaw.connect(srv.port, { path: `/v1/topics/hall/1/ws?token=${token}` });
    ws.destroy();
    assert403(response);
  });

  test('subscribe outside the claims: error op forbidden, the connection stays and works', async (t) => {
    const srv = await secured(t);
    const token = heraldToken(SECRET, { subscribe: ['orders/*'] });
    const ws = await wsOpen(t, srv, { path: `/v1/ws?token=${token}`, protocol: 'herald.v1' });
    assertWsError(await wsOp(ws, { op: 'subscribe', topic: 'orders/**', ref: 'wide' }), 'wide', 'forbidden');
    assertWsError(await wsOp(ws, { op: 'subscribe', topic: 'users/1', ref: 'other' }), 'other', 'forbidden');
    assertWsError(await wsOp(ws, { op: 'subscribe', topic: '**', ref: 'all' }), 'all', 'forbidden');
    assert.equal((await wsOp(ws, { op: 'ping', ref: 'p' })).op, 'pong');
    const sub = await wsOp(ws, { op: 'subscribe', topic: 'orders/*', ref: 'ok' });
    assert.equal(sub.op, 'subscribed', JSON.stringify(sub));
    assert.equal(sub.topic, 'orders/*');
    await publishOk(srv.url, 'users/1', { not: 'for me' }, { headers: bearer(KEY) });
    const rec = await publishOk(srv.url, 'orders/5', { n: 5 }, { headers: bearer(KEY) });
    const ev = await wsEvent(ws);
    assert.equal(ev.id, rec.id);
    assert.equal(ev.topic, 'orders/5');
    assert.deepEqual(ev.data, { n: 5 });
    // A forbidden subscribe with since replays nothing either.
    assertWsError(await wsOp(ws, { op: 'subscribe', topic: 'users/1', since: '0', ref: 'h' }), 'h', 'forbidden');
    assert.deepEqual((await ws.quiet(200)).filter((f) => f.opcode === OP.CLOSE), []);
  });

  test('publish: the publish claim allows the topic on WebSocket and HTTP alike, nothing else', async (t) => {
    const srv = await secured(t);
    const token = heraldToken(SECRET, { subscribe: ['chat/*'], publish: ['chat/*'] });
    const subOnly = heraldToken(SECRET, { subscribe: ['chat/*'] });
    const ws = await wsOpen(t, srv, { path: '/v1/ws', headers: bearer(token) });
    assert.equal((await wsOp(ws, { op: 'subscribe', topic: 'chat/*', ref: 's' })).op, 'subscribed');
    const ack = await wsOp(ws, { op: 'publish', topic: 'chat/room', type: 'say', data: { text: 'hi' }, ref: 'p1' });
    assert.equal(ack.op, 'ack', JSON.stringify(ack));
    const ev = await wsEvent(ws);
    assert.equal(ev.id, ack.id);
    assertWsError(await wsOp(ws, { op: 'publish', topic: 'news/x', data: 1, ref: 'p2' }), 'p2', 'forbidden');
    assertWsError(await wsOp(ws, { op: 'publish', topic: 'chat/room/deep', data: 1, ref: 'p3' }), 'p3', 'forbidden');
    assert.equal((await wsOp(ws, { op: 'ping', ref: 'alive' })).op, 'pong');

    const ws2 = await wsOpen(t, srv, { path: `/v1/ws?token=${subOnly}` });
    assertWsError(await wsOp(ws2, { op: 'publish', topic: 'chat/room', data: 1, ref: 'q' }), 'q', 'forbidden');
    assert.equal((await wsOp(ws2, { op: 'ping', ref: 'alive' })).op, 'pong');

    // HTTP with the same JWT: allowed only for the claimed topics.
    const r = await publish(srv.url, 'chat/room', { via: 'http' }, { headers: bearer(token) });
    assert.equal(r.status, 201, r.text);
    assert403(await publish(srv.url, 'news/x', { via: 'http' }, { headers: bearer(token) }), 'HTTP to an unclaimed topic');
    assert403(await publish(srv.url, 'chat/room', { via: 'http' }, { headers: bearer(subOnly) }), 'subscribe-only token');
    assert401(await publish(srv.url, 'chat/room', { via: 'http' }), 'no credential');
    const batch = await request(`${srv.url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...bearer(token) },
      body: JSON.stringify({ events: [{ topic: 'chat/a', data: 1 }, { topic: 'news/b', data: 2 }] }),
    });
    assert403(batch, 'a batch with one unclaimed topic');
    const batchOk = await request(`${srv.url}/v1/events`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...bearer(token) },
      body: JSON.stringify({ events: [{ topic: 'chat/b', data: 1 }, { topic: 'chat/c', data: 2 }] }),
    });
    assert.equal(batchOk.status, 201, `a batch of claimed topics: ${batchOk.text}`);
    const stored1 = await stored(srv, 'chat/room', bearer(KEY));
    assert.deepEqual(stored1.map((e) => e.data), [{ text: 'hi' }, { via: 'http' }]);
    assert.deepEqual(await stored(srv, 'news/x', bearer(KEY)), []);
    assert.deepEqual(await stored(srv, 'chat/a', bearer(KEY)), [], 'the refused batch stored nothing');
  });

  test('raw mode: frames from a token with the publish claim are published; without it the connection closes 1008 and nothing is stored', async (t) => {
    const srv = await secured(t);
    const both = heraldToken(SECRET, { subscribe: ['room/1'], publish: ['room/1'] });
    const subOnly = heraldToken(SECRET, { subscribe: ['room/1'] });
    const a = await wsOpen(t, srv, { path: `/v1/topics/room/1/ws?token=${both}` });
    a.sendText('hello');
    assert.equal((await a.readText()).text, 'hello');
    const b = await wsOpen(t, srv, { path: `/v1/topics/room/1/ws?token=${subOnly}` });
    b.sendText('sneaky');
    await b.expectClose(1008);
    assert.deepEqual((await stored(srv, 'room/1', bearer(KEY))).map((e) => e.data), ['hello']);
  });
});

// ---------------------------------------------------------------------------------------------
// CORS.

describe('CORS', () => {
  const APP = 'http://app.test';

  test('an allowed Origin is echoed with Vary: Origin; another origin gets no Allow-Origin', async (t) => {
    const srv = await startServer(t, { args: ['--cors-origin', APP] });
    await publishOk(srv.url, 'c', { a: 1 });
    let r = await get(`${srv.url}/v1/topics/c/events?since=0`, { headers: { Origin: APP } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['access-control-allow-origin'], APP);
    assert.match(r.headers.vary ?? '', /\bOrigin\b/i);
    const expose = (r.headers['access-control-expose-headers'] ?? '').toLowerCase();
    for (const h of ['etag', 'herald-epoch']) assert.ok(expose.includes(h), `Expose-Headers has ${h}: ${expose}`);

    // A page of another origin is refused outright (CSRF: a browser delivers no-cors POSTs).
    r = await get(`${srv.url}/v1/topics/c/events?since=0`, { headers: { Origin: 'http://evil.test' } });
    assert.equal(r.status, 403);
    assert.equal(r.json.error, 'forbidden');
    assert.equal(r.headers['access-control-allow-origin'], undefined);
    assert.equal(r.headers['access-control-allow-credentials'], undefined);
    assert.match(r.headers.vary ?? '', /\bOrigin\b/i);

    for (const o of ['http://app.test.evil', 'https://app.test', 'http://app.test:8080', 'null']) {
      r = await get(`${srv.url}/v1/topics/c/events`, { headers: { Origin: o } });
      assert.equal(r.status, 403, `Origin ${o}`);
      assert.equal(r.headers['access-control-allow-origin'], undefined, `Origin ${o}`);
    }
    r = await get(`${srv.url}/v1/topics/c/events`);
    assert.equal(r.headers['access-control-allow-origin'], undefined, 'no Origin');

    // Publishing answers (201) and errors carry the header too, so a page can read them.
    r = await publish(srv.url, 'c', { a: 2 }, { headers: { Origin: APP } });
    assert.equal(r.status, 201);
    assert.equal(r.headers['access-control-allow-origin'], APP);
    r = await get(`${srv.url}/v1/topics/bad//x/events`, { headers: { Origin: APP } });
    assert.equal(r.status, 400);
    assert.equal(r.headers['access-control-allow-origin'], APP);
    const sse = await openSse(`${srv.url}/v1/topics/c/stream`, { headers: { Origin: APP } });
    assert.equal(sse.status, 200);
    assert.equal(sse.headers['access-control-allow-origin'], APP);
    sse.close();
  });

  test('preflight: allowed → 204 with the allow headers; disallowed → 403; no credential needed', async (t) => {
    const srv = await startServer(t, { args: ['--cors-origin', APP, '--cors-origin', 'http://other.test:3000', '--api-key', KEY, '--jwt-secret', SECRET] });
    for (const origin of [APP, 'http://other.test:3000']) {
      const r = await request(`${srv.url}/v1/topics/x/events`, {
        method: 'OPTIONS',
        headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type, idempotency-key, authorization' },
      });
      assert.equal(r.status, 204, r.text);
      assert.equal(r.body.length, 0);
      assert.equal(r.headers['access-control-allow-origin'], origin);
      assert.match(r.headers['access-control-allow-methods'] ?? '', /\bPOST\b/);
      assert.match(r.headers['access-control-allow-methods'] ?? '', /\bGET\b/);
      const allowH = (r.headers['access-control-allow-headers'] ?? '').toLowerCase();
      for (const h of ['content-type', 'idempotency-key', 'authorization']) assert.ok(allowH.includes(h), `Allow-Headers has ${h}: ${allowH}`);
      assert.match(r.headers.vary ?? '', /\bOrigin\b/i);
      assert.match(r.headers['access-control-max-age'] ?? '', /^\d+$/);
    }
    // Preflight of the management API and of a stream (Last-Event-ID is not safelisted).
    for (const [path, method, hdrs] of [['/v1/webhooks', 'POST', 'authorization, content-type'], ['/v1/topics/x/stream', 'GET', 'last-event-id']]) {
      const r = await request(`${srv.url}${path}`, { method: 'OPTIONS', headers: { Origin: APP, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': hdrs } });
      assert.equal(r.status, 204, `${path}: ${r.text}`);
      assert.equal(r.headers['access-control-allow-origin'], APP);
    }
    const bad = await request(`${srv.url}/v1/topics/x/events`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://evil.test', 'Access-Control-Request-Method': 'POST' },
    });
    assert403(bad, 'disallowed preflight');
    assert.equal(bad.headers['access-control-allow-origin'], undefined);
  });

  test('--cors-origin "*" allows any origin', async (t) => {
    const srv = await startServer(t, { args: ['--cors-origin', '*'] });
    for (const o of ['http://a.test', 'https://b.example:8443']) {
      const r = await get(`${srv.url}/v1/topics/c/events`, { headers: { Origin: o } });
      assert.ok(['*', o].includes(r.headers['access-control-allow-origin']), `Allow-Origin for ${o}: ${r.headers['access-control-allow-origin']}`);
      const p = await request(`${srv.url}/v1/topics/c/events`, { method: 'OPTIONS', headers: { Origin: o, 'Access-Control-Request-Method': 'POST' } });
      assert.equal(p.status, 204);
      const ws = await WsRaw.open(srv.port, { path: '/v1/ws', headers: { Origin: o } });
      ws.destroy();
    }
  });

  test('WebSocket Origin: disallowed → 403, allowed → 101, none → 101 (JSON and raw endpoints)', async (t) => {
    const srv = await startServer(t, { args: ['--cors-origin', APP] });
    for (const path of ['/v1/ws', '/v1/topics/room/ws']) {
      const { ws, response } = await WsRaw.connect(srv.port, { path, headers: { Origin: 'http://evil.test' } });
      ws.destroy();
      assert403(response, `${path} evil origin`);
      (await WsRaw.open(srv.port, { path, headers: { Origin: APP } })).destroy();
      (await WsRaw.open(srv.port, { path })).destroy();
    }
    // The origin is checked before the token: a good token from a bad origin is still 403.
    const srv2 = await secured(t, ['--cors-origin', APP]);
    const token = heraldToken(SECRET, { subscribe: ['**'] });
    const { ws, response } = await WsRaw.connect(srv2.port, { path: `/v1/ws?token=${token}`, headers: { Origin: 'http://evil.test' } });
    ws.destroy();
    assert403(response);
    (await WsRaw.open(srv2.port, { path: `/v1/ws?token=${token}`, headers: { Origin: APP } })).destroy();
  });

  test('without --cors-origin: only herald\'s own origin; foreign pages get 403 (also no-cors POSTs and WebSockets)', async (t) => {
    const srv = await startServer(t);
    let r = await get(`${srv.url}/v1/topics/c/events`, { headers: { Origin: APP } });
    assert.equal(r.status, 403);
    assert.equal(r.headers['access-control-allow-origin'], undefined);
    r = await request(`${srv.url}/v1/topics/c/events`, { method: 'POST', headers: { Origin: APP, 'Content-Type': 'text/plain' }, body: 'forged' });
    assert.equal(r.status, 403);
    r = await request(`${srv.url}/v1/webhooks`, { method: 'POST', headers: { Origin: APP, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: JSON.stringify({ url: 'https://attacker.example/x', topics: ['**'] }) });
    assert.equal(r.status, 403);
    assert.deepEqual((await get(`${srv.url}/v1/topics/c/events?since=0`)).json.events, []);
    r = await get(`${srv.url}/v1/topics/c/events`, { headers: { Origin: srv.url } });
    assert.equal(r.status, 200, 'herald\'s own origin');
    await assert.rejects(WsRaw.open(srv.port, { path: '/v1/ws', headers: { Origin: 'http://anything.test' } }));
    (await WsRaw.open(srv.port, { path: '/v1/ws', host: `127.0.0.1:${srv.port}`, headers: { Origin: srv.url } })).destroy();
    // DNS rebinding: an open herald answers only to localhost or IP literals in Host.
    r = await request(`${srv.url}/healthz`, { headers: { Host: 'attacker.example:80' } });
    assert.equal(r.status, 403);
    r = await request(`${srv.url}/healthz`, { headers: { Host: `localhost:${srv.port}` } });
    assert.equal(r.status, 200);
  });
});
