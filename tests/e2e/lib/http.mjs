// HTTP helpers for the end-to-end tests.
//  - request(): one request on a fresh connection (node:http), headers exactly as given.
//  - RawConn: a plain TCP connection (node:net) for malformed requests, pipelining and timeouts.
//  - openSse(): a streaming GET that parses Server-Sent Events and keeps the raw bytes.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls cond() (may be async) every `interval` ms until truthy; throws after `timeout` ms. */
export async function waitFor(cond, { timeout = 5000, interval = 10, message = 'condition' } = {}) {
  const start = Date.now();
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() - start > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${message}`);
    await sleep(interval);
  }
}

function toBuffer(body) {
  if (body === undefined || body === null) return null;
  if (Buffer.isBuffer(body)) return body;
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  return Buffer.from(JSON.stringify(body), 'utf8');
}

/**
 * One HTTP request on its own connection. body: string | Buffer | object (sent as JSON text,
 * without adding a Content-Type). No header is added but Host, Content-Length (when there is a
 * body or the method is POST/PUT/PATCH) and Connection: close.
 * Resolves to {status, headers, body (Buffer), text, json (parsed or undefined), ms}.
 */
export function request(url, { method = 'GET', headers = {}, body, timeout = 15000, signal } = {}) {
  const buf = toBuffer(body);
  const h = { ...headers };
  const hasLength = Object.keys(h).some((k) => k.toLowerCase() === 'content-length');
  const hasTe = Object.keys(h).some((k) => k.toLowerCase() === 'transfer-encoding');
  if (!hasLength && !hasTe && (buf || ['POST', 'PUT', 'PATCH'].includes(method))) {
    h['Content-Length'] = String(buf ? buf.length : 0);
  }
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: h, agent: false, signal }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const b = Buffer.concat(chunks);
        const text = b.toString('utf8');
        let json;
        try {
          json = text.length ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: b, text, json, ms: Date.now() - started });
      });
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`${method} ${url} timed out after ${timeout} ms`)));
    req.on('error', reject);
    if (buf) req.end(buf);
    else req.end();
  });
}

export const get = (url, opts = {}) => request(url, { ...opts, method: 'GET' });

/** POST /v1/topics/{topic}/events. data: string (sent as is) | Buffer | object (JSON text). */
// contentType: undefined → application/json for an object, none for a string or Buffer (the
// server then takes JSON when it parses, else text); null → none; else that header.
export function publish(base, topic, data, { type, contentType, headers = {}, encodeTopic = true } = {}) {
  const t = encodeTopic ? topic.split('/').map(encodeURIComponent).join('/') : topic;
  const q = type !== undefined ? `?type=${encodeURIComponent(type)}` : '';
  const h = { ...headers };
  const raw = typeof data === 'string' || Buffer.isBuffer(data);
  if (contentType === undefined && !raw) contentType = 'application/json';
  if (contentType !== null && contentType !== undefined) h['Content-Type'] = contentType;
  const body = typeof data === 'string' || Buffer.isBuffer(data) ? data : JSON.stringify(data);
  return request(`${base}/v1/topics/${t}/events${q}`, { method: 'POST', headers: h, body });
}

/** publish() that must answer 201; returns the receipt. */
export async function publishOk(base, topic, data, opts) {
  const r = await publish(base, topic, data, opts);
  assert.equal(r.status, 201, `publish to ${topic} answered ${r.status}: ${r.text}`);
  return r.json;
}

/** GET poll url; returns the response, asserting 200 JSON when `ok` is set. */
export async function poll(base, pathAndQuery, opts = {}) {
  return request(`${base}${pathAndQuery}`, opts);
}

export const ERROR_CODES = new Set([
  'invalid_topic', 'invalid_type', 'invalid_json', 'invalid_utf8', 'invalid_id', 'invalid_parameter',
  'invalid_url', 'unsupported_media_type', 'not_found', 'method_not_allowed', 'payload_too_large',
  'headers_too_large', 'unauthorized', 'forbidden', 'invalid_signature', 'timestamp_out_of_tolerance',
  'rate_limited', 'unavailable', 'bad_request',
]);

/**
 * Asserts an error answer: the status, a JSON body that is exactly {"error","message"} (plus
 * "position" when given), and the code. code may be a string or an array of acceptable codes.
 */
export function assertError(res, status, code, { position, context = '' } = {}) {
  const where = `${context}${context ? ': ' : ''}${res.status} ${res.text}`;
  assert.equal(res.status, status, where);
  const ct = res.headers['content-type'] || '';
  assert.match(ct, /^application\/json\b/, `error content-type (${where})`);
  assert.ok(res.json && typeof res.json === 'object' && !Array.isArray(res.json), `error body is a JSON object (${where})`);
  const keys = Object.keys(res.json).sort();
  const want = position === undefined ? ['error', 'message'] : ['error', 'message', 'position'];
  assert.deepEqual(keys, want, `error body keys (${where})`);
  assert.equal(typeof res.json.message, 'string', where);
  assert.ok(res.json.message.length > 0, `message is not empty (${where})`);
  assert.ok(ERROR_CODES.has(res.json.error), `error code is one of SPEC §2 (${where})`);
  if (Array.isArray(code)) assert.ok(code.includes(res.json.error), `error code in ${code.join('|')} (${where})`);
  else assert.equal(res.json.error, code, where);
  if (position !== undefined) assert.equal(res.json.position, position, `position (${where})`);
}

export const EPOCH_RE = /^[0-9a-f]{8}$/i;
export const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
export const ID_RE = /^(0|[1-9][0-9]*)$/;

export function assertEpoch(res, epoch) {
  const e = res.headers['herald-epoch'];
  assert.match(e ?? '', EPOCH_RE, `Herald-Epoch header on ${res.status} (got ${e})`);
  if (epoch !== undefined) assert.equal(e, epoch, 'Herald-Epoch is the same on every response');
  return e;
}

/** Asserts the shape of a stored event object, exactly. */
export function assertEvent(ev, { id, topic, type = 'message', data } = {}) {
  assert.deepEqual(Object.keys(ev).sort(), ['data', 'id', 'time', 'topic', 'type'], `event keys ${JSON.stringify(ev)}`);
  assert.match(ev.id, ID_RE);
  assert.match(ev.time, TIME_RE);
  if (id !== undefined) assert.equal(ev.id, String(id));
  if (topic !== undefined) assert.equal(ev.topic, topic);
  if (type !== null) assert.equal(ev.type, type);
  if (data !== undefined) assert.deepEqual(ev.data, data);
}

// ---------------------------------------------------------------------------------------------
// Raw TCP connection.

/** Parses one HTTP response at the start of buf. Returns {response, rest} or null when incomplete. */
export function parseResponse(buf, { closed = false, head = false } = {}) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const headText = buf.subarray(0, end).toString('latin1');
  const lines = headText.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
  const status = Number(m[2]);
  const headers = {};
  const headerList = [];
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    const name = line.slice(0, i).toLowerCase();
    const value = line.slice(i + 1).trim();
    headerList.push([name, value]);
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let pos = end + 4;
  let body;
  if (head || status === 204 || status === 304 || (status >= 100 && status < 200)) {
    body = Buffer.alloc(0);
  } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
    const parts = [];
    for (;;) {
      const le = buf.indexOf('\r\n', pos);
      if (le < 0) return null;
      const size = parseInt(buf.subarray(pos, le).toString('latin1'), 16);
      pos = le + 2;
      if (size === 0) {
        const te = buf.indexOf('\r\n', pos);
        if (te < 0) return null;
        pos = te + 2; // no trailers expected
        break;
      }
      if (buf.length < pos + size + 2) return null;
      parts.push(buf.subarray(pos, pos + size));
      pos += size + 2;
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (buf.length < pos + n) return null;
    body = buf.subarray(pos, pos + n);
    pos += n;
  } else {
    if (!closed) return null; // body delimited by close
    body = buf.subarray(pos);
    pos = buf.length;
  }
  const text = body.toString('utf8');
  let json;
  try {
    json = text.length ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { response: { status, headers, headerList, body, text, json }, rest: buf.subarray(pos) };
}

export class RawConn {
  static connect(port, host = '127.0.0.1') {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host });
      sock.once('connect', () => resolve(new RawConn(sock)));
      sock.once('error', reject);
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.all = Buffer.alloc(0); // everything ever received
    this.closed = false;
    this.error = null;
    this.waiters = new Set();
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.all = Buffer.concat([this.all, d]);
      this._wake();
    });
    sock.on('error', (e) => {
      this.error = e;
    });
    sock.on('close', () => {
      this.closed = true;
      this._wake();
    });
  }

  _wake() {
    for (const w of [...this.waiters]) w();
  }

  _wait(check, timeout, what) {
    return new Promise((resolve, reject) => {
      const tick = () => {
        let v;
        try {
          v = check();
        } catch (e) {
          cleanup();
          reject(e);
          return;
        }
        if (v !== undefined) {
          cleanup();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`raw connection: timed out after ${timeout} ms waiting for ${what}; received ${JSON.stringify(this.all.toString('latin1').slice(0, 2000))}`));
      }, timeout);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(tick);
      };
      this.waiters.add(tick);
      tick();
    });
  }

  write(data) {
    return new Promise((resolve) => {
      if (this.closed || this.sock.destroyed) return resolve(false);
      this.sock.write(data, (err) => resolve(!err));
    });
  }

  /** The next complete response (waits for it). */
  readResponse({ timeout = 5000, head = false } = {}) {
    return this._wait(() => {
      const r = parseResponse(this.buf, { closed: this.closed, head });
      if (r) {
        this.buf = Buffer.from(r.rest);
        return r.response;
      }
      if (this.closed) throw new Error(`connection closed before a complete response; received ${JSON.stringify(this.all.toString('latin1').slice(0, 2000))}`);
      return undefined;
    }, timeout, 'a response');
  }

  /** Resolves true when the server closes the connection within timeout, false otherwise. */
  async waitClosed(timeout = 3000) {
    try {
      await this._wait(() => (this.closed ? true : undefined), timeout, 'close');
      return true;
    } catch {
      return false;
    }
  }

  /** Waits until the received bytes contain `text`. */
  waitText(text, timeout = 5000) {
    return this._wait(() => (this.all.toString('latin1').includes(text) ? true : undefined), timeout, JSON.stringify(text));
  }

  destroy() {
    this.sock.destroy();
  }
}

/** Sends bytes on a new connection, reads one response, and reports whether the server then closed. */
export async function rawExchange(port, bytes, { timeout = 5000, closeTimeout = 3000 } = {}) {
  const c = await RawConn.connect(port);
  try {
    await c.write(bytes);
    const response = await c.readResponse({ timeout });
    const closed = await c.waitClosed(closeTimeout);
    return { ...response, closed };
  } finally {
    c.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events.

/**
 * An incremental SSE parser per the WHATWG rules (lines end on CR, LF or CRLF).
 * feed(text) returns the new items:
 * {kind:'comment', text} | {kind:'retry', value} | {kind:'event', id, event, data, dataLines}.
 */
export class SseParser {
  constructor() {
    this.pending = '';
    this.cur = null;
  }

  feed(text) {
    this.pending += text;
    const out = [];
    let start = 0;
    let i = 0;
    const s = this.pending;
    while (i < s.length) {
      const ch = s[i];
      if (ch !== '\n' && ch !== '\r') {
        i++;
        continue;
      }
      if (ch === '\r' && i + 1 >= s.length) break; // may be the CR of a CRLF split across chunks
      const line = s.slice(start, i);
      i += ch === '\r' && s[i + 1] === '\n' ? 2 : 1;
      start = i;
      this._line(line, out);
    }
    this.pending = s.slice(start);
    return out;
  }

  _line(line, out) {
    if (line === '') {
      if (this.cur) {
        this.cur.data = this.cur.dataLines.join('\n');
        out.push(this.cur);
      }
      this.cur = null;
      return;
    }
    if (line.startsWith(':')) {
      out.push({ kind: 'comment', text: line.slice(1).replace(/^ /, '') });
      return;
    }
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? '' : line.slice(c + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'retry') {
      out.push({ kind: 'retry', value });
      return;
    }
    if (!this.cur) this.cur = { kind: 'event', id: undefined, event: undefined, dataLines: [] };
    if (field === 'id') this.cur.id = value;
    else if (field === 'event') this.cur.event = value;
    else if (field === 'data') this.cur.dataLines.push(value);
    else this.cur[`field_${field}`] = value;
  }
}

/** Parses a whole SSE text; returns the complete items. */
export function parseSse(text) {
  return new SseParser().feed(text);
}

/**
 * Opens an SSE stream. Resolves once the response head arrived:
 * {status, headers, raw(), items, events(), waitEvents(n), waitItem(pred), close(), ended}
 * For a non-200 answer the body is read to the end first (json/text set).
 */
export function openSse(url, { headers = {}, timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'GET', headers: { Accept: 'text/event-stream', ...headers }, agent: false });
    const timer = setTimeout(() => {
      req.destroy(new Error(`SSE ${url}: no response head within ${timeout} ms`));
    }, timeout);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.on('response', (res) => {
      clearTimeout(timer);
      res.setEncoding('utf8');
      const stream = {
        status: res.statusCode,
        headers: res.headers,
        rawText: '',
        items: [],
        parser: new SseParser(),
        closed: false,
        waiters: new Set(),
        raw() {
          return this.rawText;
        },
        events() {
          return this.items.filter((x) => x.kind === 'event');
        },
        _wait(check, to, what) {
          return new Promise((res2, rej2) => {
            const tick = () => {
              const v = check();
              if (v !== undefined) {
                done();
                res2(v);
              } else if (this.closed) {
                done();
                rej2(new Error(`SSE stream ended while waiting for ${what}; raw so far:\n${this.rawText.slice(-3000)}`));
              }
            };
            const t2 = setTimeout(() => {
              done();
              rej2(new Error(`SSE: timed out after ${to} ms waiting for ${what}; raw so far:\n${this.rawText.slice(-3000)}`));
            }, to);
            const done = () => {
              clearTimeout(t2);
              this.waiters.delete(tick);
            };
            this.waiters.add(tick);
            tick();
          });
        },
        /** Waits until at least n events arrived; resolves to the first n. */
        waitEvents(n, to = 5000) {
          return this._wait(() => {
            const ev = this.events();
            return ev.length >= n ? ev.slice(0, n) : undefined;
          }, to, `${n} events (have ${this.events().length})`);
        },
        waitItem(pred, to = 5000, what = 'an item') {
          return this._wait(() => this.items.find(pred), to, what);
        },
        /** Resolves when the server ends the stream (true) or after `to` ms (false). */
        async waitEnded(to = 5000) {
          try {
            await this._wait(() => (this.closed ? true : undefined), to, 'the end of the stream');
            return true;
          } catch {
            return this.closed;
          }
        },
        close() {
          req.destroy();
          res.destroy();
        },
      };
      const wake = () => {
        for (const w of [...stream.waiters]) w();
      };
      if (res.statusCode !== 200) {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          stream.text = text;
          try {
            stream.json = JSON.parse(text);
          } catch {
            stream.json = undefined;
          }
          resolve(stream);
        });
        res.on('error', reject);
        return;
      }
      res.on('data', (d) => {
        stream.rawText += d;
        stream.items.push(...stream.parser.feed(d));
        wake();
      });
      const end = () => {
        if (stream.closed) return;
        stream.closed = true;
        wake();
      };
      res.on('end', end);
      res.on('close', end);
      res.on('error', end);
      resolve(stream);
    });
    req.end();
  });
}
