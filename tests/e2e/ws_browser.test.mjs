// SPEC §6 raw mode with a real browser: headless Chromium (Debian package `chromium`) driven by
// playwright-core. Two pages chat through /v1/topics/chat/room1/ws; both see every message in the
// same order. Chromium offers permessage-deflate, so the compressed path is used as browsers use it.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import http from 'node:http';
import { chromium } from 'playwright-core';
import { startServer, test } from './lib/server.mjs';
import { get } from './lib/http.mjs';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM)
  ? false
  : `headless Chromium not found at ${CHROMIUM}: install it with "apt-get install -y chromium" (scripts/install-deps)`;

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>herald chat</title></head>
<body><ul id="log"></ul>
<script>
  window.messages = [];
  window.closeInfo = null;
  window.connect = (url) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    window.ws = ws;
    ws.onmessage = (e) => {
      window.messages.push(e.data);
      const li = document.createElement('li');
      li.textContent = e.data;
      document.getElementById('log').appendChild(li);
    };
    ws.onopen = () => resolve({ protocol: ws.protocol, extensions: ws.extensions });
    ws.onerror = () => reject(new Error('WebSocket error'));
    ws.onclose = (e) => { window.closeInfo = { code: e.code, reason: e.reason, wasClean: e.wasClean }; };
  });
  window.say = (text) => window.ws.send(text);
</script></body></html>`;

/** A tiny HTTP server for the page, so it has a real http:// origin. */
async function pageServer(t) {
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => srv.close(r)));
  return `http://127.0.0.1:${srv.address().port}/`;
}

async function launch(t) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  return browser;
}

async function waitMessages(page, n, timeout = 5000) {
  await page.waitForFunction((k) => window.messages.length >= k, n, { timeout });
  return page.evaluate(() => window.messages.slice());
}

test('browser chat: two Chromium pages exchange messages over raw mode, same order on both', { skip }, async (t) => {
  // The page comes from another origin, which herald refuses unless --cors-origin allows it.
  const pageUrl = await pageServer(t);
  const srv = await startServer(t, { args: ['--cors-origin', new URL(pageUrl).origin] });
  const browser = await launch(t);
  const ctx = await browser.newContext();
  const [alice, bob] = await Promise.all([ctx.newPage(), ctx.newPage()]);
  await Promise.all([alice.goto(pageUrl), bob.goto(pageUrl)]);
  const wsUrl = `ws://127.0.0.1:${srv.port}/v1/topics/chat/room1/ws`;
  const [ia, ib] = await Promise.all([alice.evaluate((u) => window.connect(u), wsUrl), bob.evaluate((u) => window.connect(u), wsUrl)]);
  // Chromium offers permessage-deflate; herald accepts it with both no_context_takeover flags.
  for (const info of [ia, ib]) {
    assert.equal(info.protocol, '');
    assert.equal(info.extensions, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
  }

  await alice.evaluate(() => window.say('hello from alice 👋'));
  assert.deepEqual(await waitMessages(alice, 1), ['hello from alice 👋']);
  assert.deepEqual(await waitMessages(bob, 1), ['hello from alice 👋']);
  await bob.evaluate(() => window.say('hi alice, bob here — ça va?'));
  const expected = ['hello from alice 👋', 'hi alice, bob here — ça va?'];
  assert.deepEqual(await waitMessages(alice, 2), expected);
  assert.deepEqual(await waitMessages(bob, 2), expected);

  // Both talk at once: each sees all 40 messages, in one and the same order.
  await Promise.all([
    alice.evaluate(() => { for (let i = 0; i < 20; i++) window.say(`a${i}`); }),
    bob.evaluate(() => { for (let i = 0; i < 20; i++) window.say(`b${i}`); }),
  ]);
  const la = await waitMessages(alice, 42);
  const lb = await waitMessages(bob, 42);
  assert.equal(la.length, 42);
  assert.deepEqual(la, lb, 'both pages see the same order');
  const tail = la.slice(2);
  assert.deepEqual(tail.filter((m) => m[0] === 'a'), [...Array(20).keys()].map((i) => `a${i}`), "alice's messages keep their order");
  assert.deepEqual(tail.filter((m) => m[0] === 'b'), [...Array(20).keys()].map((i) => `b${i}`), "bob's messages keep their order");

  // A long, compressible message (sent compressed by Chromium, broadcast compressed by herald).
  const long = 'the quick brown fox '.repeat(3000);
  await alice.evaluate((m) => window.say(m), long);
  assert.equal((await waitMessages(bob, 43))[42], long);
  assert.equal((await waitMessages(alice, 43))[42], long);

  // The store holds the same order, as text events of type message.
  const r = await get(`${srv.url}/v1/topics/chat/room1/events?since=0&limit=1000`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.events.map((e) => e.data), la.concat(long).slice(0, 43));
  assert.ok(r.json.events.every((e) => e.type === 'message' && e.topic === 'chat/room1'));

  // Closing one page's socket cleanly: code 1000 comes back, the other page stays connected.
  await alice.evaluate(() => window.ws.close(1000, 'bye'));
  await alice.waitForFunction(() => window.closeInfo !== null);
  assert.deepEqual(await alice.evaluate(() => window.closeInfo), { code: 1000, reason: '', wasClean: true });
  await bob.evaluate(() => window.say('still here'));
  assert.equal((await waitMessages(bob, 44))[43], 'still here');
  assert.equal(await bob.evaluate(() => window.closeInfo), null);
});

test('browser: a JSON message in raw mode is published as JSON and arrives as its JSON text', { skip }, async (t) => {
  // The page comes from another origin, which herald refuses unless --cors-origin allows it.
  const pageUrl = await pageServer(t);
  const srv = await startServer(t, { args: ['--cors-origin', new URL(pageUrl).origin] });
  const browser = await launch(t);
  const page = await browser.newPage();
  await page.goto(pageUrl);
  await page.evaluate((u) => window.connect(u), `ws://127.0.0.1:${srv.port}/v1/topics/chat/json/ws`);
  await page.evaluate(() => window.say('{ "user": "ann", "text": "hi" }'));
  const [m] = await waitMessages(page, 1);
  assert.deepEqual(JSON.parse(m), { user: 'ann', text: 'hi' });
  const r = await get(`${srv.url}/v1/topics/chat/json/events?since=0`);
  assert.deepEqual(r.json.events.map((e) => e.data), [{ user: 'ann', text: 'hi' }]);
});
