// Edges found by a fresh user's review: HEAD answers carry no body, pipelined input beyond the
// held-input limit is paced instead of dropped, If-None-Match is compared weakly and as a list,
// Idempotency-Key receipts keep their shape, and a repeated JSON member counts once (the last).
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, test } from './lib/server.mjs';
import { request, get, publishOk, sleep } from './lib/http.mjs';

/** Sends bytes on one connection and collects everything until the server closes or idle. */
function exchange(port, bytes, { idleMs = 800 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const chunks = [];
    let timer;
    const done = () => {
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(done, idleMs);
    };
    socket.on('connect', () => {
      socket.write(bytes);
      arm();
    });
    socket.on('data', (c) => {
      chunks.push(c);
      arm();
    });
    socket.on('end', done);
    socket.on('error', reject);
  });
}

test('HEAD is answered 405 with headers only, and the next request on the connection still works', async (t) => {
  const srv = await startServer(t);
  const out = await exchange(srv.port, 'HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  const first = out.indexOf('HTTP/1.1 405');
  const second = out.indexOf('HTTP/1.1 200');
  assert.ok(first === 0 && second > 0, out);
  const head = out.slice(0, second);
  assert.match(head, /Allow: GET\r\n/);
  assert.ok(head.endsWith('\r\n\r\n'), 'no body after the 405 head');
  assert.ok(out.slice(second).endsWith('{"status":"ok"}'), out.slice(second));
});

test('pipelined publishes beyond 64 KiB are all answered, in order (reading pauses, nothing dropped)', async (t) => {
  const srv = await startServer(t);
  const big = 'x'.repeat(40000);
  let bytes = '';
  for (let i = 0; i < 3; i++)
    bytes += `POST /v1/topics/pipe/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${big.length}\r\n\r\n${big}`;
  for (let i = 0; i < 900; i++) {
    const body = `{"n":${i}}`;
    bytes += `POST /v1/topics/pipe/events HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  }
  const out = await exchange(srv.port, bytes, { idleMs: 2000 });
  const answers = out.match(/HTTP\/1\.1 201 Created/g) ?? [];
  assert.equal(answers.length, 903);
  const stored = (await get(`${srv.url}/v1/topics/pipe/events?since=0&limit=1000`)).json.events;
  assert.equal(stored.length, 903);
  assert.deepEqual(stored.slice(3).map((e) => e.data.n), [...Array(900).keys()]);
});

test('If-None-Match: weak tags, lists and * all give 304 when they name the cursor', async (t) => {
  const srv = await startServer(t);
  await publishOk(srv.url, 'inm', { a: 1 });
  const url = `${srv.url}/v1/topics/inm/events?since=1`;
  for (const value of ['"1"', 'W/"1"', '"7", "1"', '*', 'W/"9",W/"1"']) {
    const r = await get(url, { headers: { 'If-None-Match': value } });
    assert.equal(r.status, 304, value);
  }
  for (const value of ['"2"', 'W/"0"', '"1']) {
    const r = await get(url, { headers: { 'If-None-Match': value } });
    assert.equal(r.status, 200, value);
  }
});

test('an Idempotency-Key used for a batch and for a single publish keeps each receipt its shape', async (t) => {
  const srv = await startServer(t);
  const batch = { events: [{ topic: 'shape', data: 1 }, { topic: 'shape', data: 2 }] };
  const headers = { 'Content-Type': 'application/json', 'Idempotency-Key': 'same-key' };
  const first = await request(`${srv.url}/v1/events`, { method: 'POST', headers, body: JSON.stringify(batch) });
  assert.equal(first.status, 201);
  assert.deepEqual(Object.keys(first.json), ['ids']);
  const single = await request(`${srv.url}/v1/topics/shape/events`, { method: 'POST', headers, body: '{"n":3}' });
  assert.equal(single.status, 201, 'the single publish has its own namespace');
  assert.deepEqual(Object.keys(single.json), ['id', 'topic', 'type', 'time']);
  const again = await request(`${srv.url}/v1/events`, { method: 'POST', headers, body: JSON.stringify(batch) });
  assert.equal(again.status, 200);
  assert.deepEqual(again.json, first.json);
});

test('a repeated JSON member counts once (the last), never concatenated', async (t) => {
  const srv = await startServer(t);
  const r = await request(`${srv.url}/v1/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: '{"events":[{"topic":"cat1","topic":"cat2","type":"t1","type":"t2","data":1}]}',
  });
  assert.equal(r.status, 201);
  const ev = (await get(`${srv.url}/v1/topics/cat2/events?since=0`)).json.events;
  assert.equal(ev.length, 1);
  assert.equal(ev[0].type, 't2');
  assert.equal((await get(`${srv.url}/v1/topics/cat1cat2/events?since=0`)).json.events.length, 0);
  const s = await request(`${srv.url}/v1/sources`, {
    method: 'POST',
    body: '{"name":"dupsrc","name":"final","scheme":"github","secret":"s","topic":"gh"}',
  });
  assert.equal(s.status, 201);
  assert.equal(s.json.name, 'final');
  await sleep(10);
});
