// SPEC §9 CORS with a real browser: headless Chromium (Debian package `chromium`) driven by
// playwright-core. A page served from one origin (a node http server) calls herald on another:
// a JSON POST with Idempotency-Key needs a real preflight, an EventSource streams across origins,
// and a page from an origin that is not listed is refused. A small TCP proxy in front of herald
// records the request lines, so the test sees that the preflight really happened.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { chromium } from 'playwright-core';
import { startServer, test } from './lib/server.mjs';
import { get } from './lib/http.mjs';
import { heraldToken } from './lib/jwt.mjs';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM)
  ? false
  : `headless Chromium not found at ${CHROMIUM}: install it with "apt-get install -y chromium" (scripts/install-deps)`;

const SECRET = 'e2e-jwt-secret-0123456789-abcdefghijklmnop';
const KEY = 'e2e-admin-key-1';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>herald cors</title></head>
<body>
<script>
  window.esMessages = [];
  window.openEs = (url, withCredentials) => new Promise((resolve) => {
    const es = new EventSource(url, { withCredentials: !!withCredentials });
    window.es = es;
    es.onmessage = (e) => window.esMessages.push({ id: e.lastEventId, data: JSON.parse(e.data) });
    es.onopen = () => resolve({ opened: true, state: es.readyState });
    es.onerror = () => {
      // A CORS or HTTP failure closes the EventSource for good (readyState 2).
      if (es.readyState === 2) resolve({ opened: false, state: es.readyState });
    };
  });
  window.post = async (url, body, headers) => {
    try {
      const res = await fetch(url, { method: 'POST', headers, body });
      return { ok: true, status: res.status, json: await res.json(), epoch: res.headers.get('Herald-Epoch') };
    } catch (e) {
      return { ok: false, error: String(e) };
    }
  };
  window.wsMessages = [];
  window.openWs = (url) => new Promise((resolve) => {
    const ws = new WebSocket(url, 'herald.v1');
    window.ws = ws;
    ws.onmessage = (e) => window.wsMessages.push(JSON.parse(e.data));
    ws.onopen = () => resolve({ opened: true });
    ws.onclose = (e) => resolve({ opened: false, code: e.code });
  });
</script></body></html>`;

/** A tiny HTTP server for the page, so it has a real http:// origin. */
async function pageServer(t) {
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => srv.close(r)));
  return `http://127.0.0.1:${srv.address().port}`;
}

/** A TCP proxy to herald that records {method, path, origin} of each request head it forwards. */
async function sniffingProxy(t, port) {
  const seen = [];
  const sockets = new Set();
  const srv = net.createServer((client) => {
    const up = net.connect({ port, host: '127.0.0.1' });
    sockets.add(client);
    sockets.add(up);
    client.on('data', (d) => {
      const text = d.toString('latin1');
      for (const m of text.matchAll(/(?:^|\r\n)(GET|POST|OPTIONS|PUT|PATCH|DELETE|HEAD) (\S+) HTTP\/1\.1\r\n((?:[^\r\n]+\r\n)*)/g)) {
        const origin = /^origin:\s*(.*)$/im.exec(m[3]);
        seen.push({ method: m[1], path: m[2], origin: origin ? origin[1].trim() : null });
      }
      up.write(d);
    });
    up.pipe(client);
    const end = () => {
      client.destroy();
      up.destroy();
    };
    client.on('close', end);
    up.on('close', end);
    client.on('error', end);
    up.on('error', end);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => srv.close(r));
  });
  return { url: `http://127.0.0.1:${srv.address().port}`, seen };
}

async function launch(t) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  return browser;
}

const BODY = '{"a":1}';
const HEADERS = { 'Content-Type': 'application/json', 'Idempotency-Key': 'k' };

test('browser CORS: a preflighted POST and an EventSource from the listed origin work; another origin is refused', { skip }, async (t) => {
  const originA = await pageServer(t);
  const originC = await pageServer(t); // not listed
  const srv = await startServer(t, { args: ['--cors-origin', originA] });
  const proxy = await sniffingProxy(t, srv.port);
  const browser = await launch(t);

  const page = await browser.newPage();
  await page.goto(`${originA}/`);
  const stream = `${proxy.url}/v1/topics/x/stream`;
  assert.deepEqual(await page.evaluate((u) => window.openEs(u), stream), { opened: true, state: 1 });

  const res = await page.evaluate(([u, b, h]) => window.post(u, b, h), [`${proxy.url}/v1/topics/x/events`, BODY, HEADERS]);
  assert.equal(res.ok, true, `fetch from the listed origin failed: ${res.error}`);
  assert.equal(res.status, 201);
  assert.equal(res.json.topic, 'x');
  assert.match(res.epoch ?? '', /^[0-9a-f]{8}$/, 'Herald-Epoch is exposed to the page');

  // The preflight really happened, from origin A, before the POST.
  const forX = proxy.seen.filter((r) => r.path === '/v1/topics/x/events');
  assert.deepEqual(forX.map((r) => [r.method, r.origin]), [['OPTIONS', originA], ['POST', originA]]);

  await page.waitForFunction(() => window.esMessages.length >= 1, null, { timeout: 5000 });
  assert.deepEqual(await page.evaluate(() => window.esMessages), [{ id: res.json.id, data: { a: 1 } }]);

  // The same idempotent request again: replayed (200), still readable across origins.
  const again = await page.evaluate(([u, b, h]) => window.post(u, b, h), [`${proxy.url}/v1/topics/x/events`, BODY, HEADERS]);
  assert.equal(again.status, 200);
  assert.equal(again.json.id, res.json.id);

  // A page from an unlisted origin: the preflight is refused, so the POST is never sent.
  const other = await browser.newPage();
  await other.goto(`${originC}/`);
  const before = proxy.seen.length;
  const bad = await other.evaluate(([u, b, h]) => window.post(u, b, { ...h, 'Idempotency-Key': 'k2' }), [`${proxy.url}/v1/topics/x/events`, BODY, HEADERS]);
  assert.equal(bad.ok, false, `fetch from an unlisted origin succeeded: ${JSON.stringify(bad)}`);
  assert.match(bad.error, /TypeError/);
  const fromC = proxy.seen.slice(before);
  assert.deepEqual(fromC.map((r) => [r.method, r.origin]), [['OPTIONS', originC]], 'only the preflight reached herald');
  const es2 = await other.evaluate((u) => window.openEs(u), stream);
  assert.equal(es2.opened, false, 'EventSource from an unlisted origin must not open');
  const ws2 = await other.evaluate((u) => window.openWs(u), `${proxy.url.replace('http', 'ws')}/v1/ws`);
  assert.equal(ws2.opened, false, 'WebSocket from an unlisted origin must not open');

  const stored = await get(`${srv.url}/v1/topics/x/events?since=0`);
  assert.equal(stored.json.events.length, 1, 'only the first POST stored an event');
});

test('browser CORS with credentials: Authorization on fetch, ?token= and the herald_token cookie on EventSource, WebSocket', { skip }, async (t) => {
  const originA = await pageServer(t);
  const srv = await startServer(t, { args: ['--cors-origin', originA, '--api-key', KEY, '--jwt-secret', SECRET] });
  const browser = await launch(t);
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(`${originA}/`);
  const token = heraldToken(SECRET, { subscribe: ['room/*'], publish: ['room/*'] });

  // No credential: the preflight passes, the POST is answered 401 and the page can read why.
  const anon = await page.evaluate(([u, b, h]) => window.post(u, b, h), [`${srv.url}/v1/topics/room/1/events`, BODY, HEADERS]);
  assert.equal(anon.ok, true, anon.error);
  assert.equal(anon.status, 401);
  assert.equal(anon.json.error, 'unauthorized');

  // EventSource with ?token= (it cannot set headers).
  assert.deepEqual(await page.evaluate((u) => window.openEs(u), `${srv.url}/v1/topics/room/1/stream?token=${token}`), { opened: true, state: 1 });
  const pub = await page.evaluate(([u, b, h]) => window.post(u, b, h), [`${srv.url}/v1/topics/room/1/events`, BODY, { ...HEADERS, Authorization: `Bearer ${KEY}` }]);
  assert.equal(pub.status, 201, JSON.stringify(pub));
  await page.waitForFunction(() => window.esMessages.length >= 1, null, { timeout: 5000 });
  assert.equal((await page.evaluate(() => window.esMessages))[0].id, pub.json.id);
  await page.evaluate(() => window.es.close());

  // The herald_token cookie on a credentialed cross-origin EventSource.
  await ctx.addCookies([{ name: 'herald_token', value: token, domain: '127.0.0.1', path: '/' }]);
  await page.evaluate(() => (window.esMessages = []));
  assert.deepEqual(await page.evaluate((u) => window.openEs(u, true), `${srv.url}/v1/topics/room/2/stream`), { opened: true, state: 1 });
  // Publishing with the JWT's publish claim, from the page.
  const pub2 = await page.evaluate(([u, b, h]) => window.post(u, b, h), [`${srv.url}/v1/topics/room/2/events`, '{"b":2}', { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }]);
  assert.equal(pub2.status, 201, JSON.stringify(pub2));
  await page.waitForFunction(() => window.esMessages.length >= 1, null, { timeout: 5000 });
  assert.deepEqual(await page.evaluate(() => window.esMessages), [{ id: pub2.json.id, data: { b: 2 } }]);

  // WebSocket from the page: the cookie authenticates the handshake; a forbidden subscribe is an error op.
  assert.deepEqual(await page.evaluate((u) => window.openWs(u), `ws://127.0.0.1:${srv.port}/v1/ws`), { opened: true });
  await page.evaluate(() => window.ws.send(JSON.stringify({ op: 'subscribe', topic: 'hall/1', ref: 'no' })));
  await page.evaluate(() => window.ws.send(JSON.stringify({ op: 'subscribe', topic: 'room/*', ref: 'yes' })));
  await page.waitForFunction(() => window.wsMessages.length >= 2, null, { timeout: 5000 });
  const msgs = await page.evaluate(() => window.wsMessages);
  assert.equal(msgs[0].op, 'error');
  assert.equal(msgs[0].code, 'forbidden');
  assert.equal(msgs[1].op, 'subscribed');
});
