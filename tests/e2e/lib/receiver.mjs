// A local webhook receiver for the end-to-end tests of webhooks out (SPEC §7).
//
//   const recv = await startReceiver(t);            // node:http on 127.0.0.1:0
//   recv.url('/hook')                               // http://127.0.0.1:PORT/hook
//   recv.route('/hook', respond.failThen(2));       // scripted behaviour per path
//   await recv.waitRequests(3, { path: '/hook' });  // records: headers, raw body, arrival time
//   assertVerified(recv.requests[0], secret);       // npm standardwebhooks, not our own code
//   await recv.stop(); await recv.start();          // port closed / open again (same port)
//
// A behaviour is a function (record, ctx) → action, where ctx = {n, attempt}: n counts the
// requests on that route (1-based), attempt counts the requests on that route carrying the same
// webhook-id (1-based: the delivery's attempt number as the receiver saw it). An action is
//   {status, headers?, body?, delay?}   answer (after delay ms)
//   {hang: true}                        never answer (the socket stays open until stop())
//   {destroy: true}                     reset the connection without an answer
// Records are kept in arrival order in recv.requests, each:
//   {seq, route, method, url, path, query, headers (lowercase names), rawHeaders, body (Buffer),
//    text, json, at (Date.now() at the end of the body), t (performance.now()), webhookId,
//    timestamp (number), signatures ([...'v1,…']), answered (status or 'hang'/'destroy'),
//    verifiedBy (the known secrets that verify it), verifyErrors}
import assert from 'node:assert/strict';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { Webhook } from 'standardwebhooks';
import { request } from './http.mjs';

export const respond = {
  /** Answers `status` (default 200) at once. */
  ok: (status = 200, body = '') => () => ({ status, body }),
  /** Answers status with the given headers and body. */
  status: (status, headers = {}, body = '') => () => ({ status, headers, body }),
  /** Answers after `ms`. */
  delay: (ms, status = 200) => () => ({ status, delay: ms }),
  /** Never answers. */
  hang: () => () => ({ hang: true }),
  /** Resets the connection. */
  destroy: () => () => ({ destroy: true }),
  /** Each delivery (webhook-id) fails k times with failStatus, then gets okStatus. */
  failThen: (k, failStatus = 500, okStatus = 200) => (rec, { attempt }) =>
    attempt <= k ? { status: failStatus, body: 'failing on purpose' } : { status: okStatus },
  /** Each delivery first gets `status` with Retry-After: after (k times), then 200. */
  retryAfter: (status = 429, after = '1', k = 1) => (rec, { attempt }) =>
    attempt <= k ? { status, headers: { 'Retry-After': String(after) } } : { status: 200 },
  /** A redirect to location. */
  redirect: (location, status = 302) => () => ({ status, headers: { Location: location } }),
  /** The i-th request on the route gets actions[i] (the last one repeats). */
  sequence: (...actions) => (rec, ctx) => {
    const a = actions[Math.min(ctx.n, actions.length) - 1];
    return typeof a === 'function' ? a(rec, ctx) : a;
  },
};

/** Verifies a record with the npm standardwebhooks package; returns null when it verifies, else the error message. */
export function verifyError(rec, secret) {
  try {
    new Webhook(secret).verify(rec.body, rec.headers);
    return null;
  } catch (e) {
    return e && e.message ? e.message : String(e);
  }
}

export function assertVerified(rec, secret, what = '') {
  const err = verifyError(rec, secret);
  assert.equal(err, null, `${what ? `${what}: ` : ''}request #${rec.seq} ${rec.webhookId} does not verify with standardwebhooks (${err}); headers ${JSON.stringify(rec.headers)}`);
}

/** The v1 signature standardwebhooks computes for this record with this secret. */
export function expectedSignature(rec, secret) {
  return new Webhook(secret).sign(rec.webhookId, new Date(rec.timestamp * 1000), rec.body);
}

class Receiver {
  constructor({ host, secrets }) {
    this.host = host;
    this.port = 0;
    this.secrets = [...secrets];
    this.routes = new Map(); // path → behaviour
    this.fallback = respond.ok();
    this.requests = [];
    this.perRoute = new Map(); // route → {n, attempts: Map(webhookId → count)}
    this.inflight = 0;
    this.maxInflight = 0;
    this.inflightByRoute = new Map();
    this.maxInflightByRoute = new Map();
    this.sockets = new Set();
    this.server = null;
    this.waiters = new Set();
  }

  /** http://HOST:PORT + path */
  url(path = '/') {
    return `http://${this.host}:${this.port}${path}`;
  }

  /** Sets the behaviour for a path (without query); route(null, b) sets the fallback. */
  route(path, behaviour) {
    if (path === null) this.fallback = behaviour;
    else this.routes.set(path, behaviour);
    return this;
  }

  addSecret(secret) {
    if (!this.secrets.includes(secret)) this.secrets.push(secret);
  }

  get listening() {
    return this.server !== null;
  }

  /** Listens (again) on this.port (0 the first time: a free one). */
  start() {
    if (this.server) return Promise.resolve(this);
    const server = http.createServer((req, res) => this._handle(req, res));
    server.keepAliveTimeout = 30000;
    server.headersTimeout = 60000;
    server.requestTimeout = 0;
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host, () => {
        server.off('error', reject);
        this.port = server.address().port;
        resolve(this);
      });
    });
  }

  /** Closes the port and every connection (hanging ones too). */
  stop() {
    const server = this.server;
    if (!server) return Promise.resolve();
    this.server = null;
    return new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
      this.sockets.clear();
    });
  }

  _wake() {
    for (const w of [...this.waiters]) w();
  }

  _handle(req, res) {
    const chunks = [];
    const path = req.url.split('?')[0];
    const route = this.routes.has(path) ? path : '*';
    this.inflight += 1;
    this.maxInflight = Math.max(this.maxInflight, this.inflight);
    const rIn = (this.inflightByRoute.get(route) || 0) + 1;
    this.inflightByRoute.set(route, rIn);
    this.maxInflightByRoute.set(route, Math.max(this.maxInflightByRoute.get(route) || 0, rIn));
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      this.inflight -= 1;
      this.inflightByRoute.set(route, this.inflightByRoute.get(route) - 1);
    };
    res.on('close', finish);
    req.on('data', (d) => chunks.push(d));
    req.on('error', () => {});
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const headers = {};
      for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = v;
      const sig = headers['webhook-signature'];
      const rec = {
        seq: this.requests.length + 1,
        route,
        method: req.method,
        url: req.url,
        path,
        query: req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '',
        httpVersion: req.httpVersion,
        headers,
        rawHeaders: req.rawHeaders,
        body,
        text,
        json,
        at: Date.now(),
        t: performance.now(),
        webhookId: headers['webhook-id'],
        timestamp: headers['webhook-timestamp'] !== undefined ? Number(headers['webhook-timestamp']) : undefined,
        signatures: typeof sig === 'string' ? sig.split(' ') : [],
        answered: null,
        verifiedBy: [],
        verifyErrors: [],
      };
      for (const s of this.secrets) {
        const err = verifyError(rec, s);
        if (err === null) rec.verifiedBy.push(s);
        else rec.verifyErrors.push(err);
      }
      let st = this.perRoute.get(route);
      if (!st) {
        st = { n: 0, attempts: new Map() };
        this.perRoute.set(route, st);
      }
      st.n += 1;
      const key = rec.webhookId ?? `#${rec.seq}`;
      const attempt = (st.attempts.get(key) || 0) + 1;
      st.attempts.set(key, attempt);
      const behaviour = route === '*' ? this.fallback : this.routes.get(route);
      let action;
      try {
        action = behaviour(rec, { n: st.n, attempt }) || { status: 200 };
      } catch (e) {
        action = { status: 599, body: String(e) };
      }
      this.requests.push(rec);
      this._wake();
      if (action.hang) {
        rec.answered = 'hang';
        return;
      }
      if (action.destroy) {
        rec.answered = 'destroy';
        req.socket.destroy();
        return;
      }
      const send = () => {
        rec.answered = action.status;
        res.writeHead(action.status, { 'Content-Type': 'text/plain', ...(action.headers || {}) });
        res.end(action.body ?? '');
      };
      if (action.delay) setTimeout(send, action.delay);
      else send();
    });
  }

  /** Records matching: {path, webhookId, eventId} (all optional). */
  matching({ path, webhookId, eventId, filter } = {}) {
    return this.requests.filter(
      (r) =>
        (path === undefined || r.path === path) &&
        (webhookId === undefined || r.webhookId === webhookId) &&
        (eventId === undefined || (r.json && r.json.id === String(eventId))) &&
        (filter === undefined || filter(r)),
    );
  }

  /** Waits until at least n records match; resolves to them. */
  waitRequests(n, { timeout = 5000, ...sel } = {}) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = this.matching(sel);
        if (m.length >= n) {
          cleanup();
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        const m = this.matching(sel);
        reject(
          new Error(
            `receiver: timed out after ${timeout} ms waiting for ${n} requests matching ${JSON.stringify(sel)} (have ${m.length}; all: ${this.requests.length}: ${JSON.stringify(this.requests.slice(-10).map((r) => ({ path: r.path, id: r.webhookId, answered: r.answered })))})`,
          ),
        );
      }, timeout);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Waits until every event id in ids has arrived (at least once) on path; resolves to {id → first record}. */
  async waitEvents(ids, { path, timeout = 5000 } = {}) {
    const want = new Set(ids.map(String));
    const have = () => {
      const got = new Map();
      for (const r of this.matching({ path })) if (r.json && want.has(r.json.id) && !got.has(r.json.id)) got.set(r.json.id, r);
      return got;
    };
    const start = Date.now();
    for (;;) {
      const got = have();
      if (got.size === want.size) return got;
      if (Date.now() - start > timeout) {
        const missing = [...want].filter((id) => !got.has(id));
        throw new Error(`receiver: after ${timeout} ms, ${missing.length} of ${want.size} events never arrived on ${path ?? 'any path'}: ${missing.slice(0, 20).join(',')}`);
      }
      await new Promise((resolve) => {
        const w = () => {
          this.waiters.delete(w);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(w, 50);
        this.waiters.add(w);
      });
    }
  }
}

/**
 * Starts a receiver; t (node:test context, may be null) stops it when the test ends.
 * Options: host (default 127.0.0.1), port (default 0), secrets (verified on arrival),
 * down: true to pick a port and leave it closed (start() later).
 */
export async function startReceiver(t, { host = '127.0.0.1', port = 0, secrets = [], down = false } = {}) {
  const r = new Receiver({ host, secrets });
  r.port = port;
  await r.start();
  if (t) t.after(() => r.stop());
  if (down) await r.stop();
  return r;
}

// ---------------------------------------------------------------------------------------------
// herald's webhook management API (SPEC §7), for the tests that drive it.


export const WEBHOOK_ID_RE = /^wh_[A-Za-z0-9_-]+$/;
export const SECRET_RE = /^whsec_[A-Za-z0-9+/]{32}$/; // base64 of 24 bytes: 32 characters, no padding
export const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed', 'dead', 'cancelled'];

/** A client of one herald server's management API; key: the API key (Bearer) if any. */
export function heraldApi(srv, { key } = {}) {
  const auth = key ? { Authorization: `Bearer ${key}` } : {};
  const call = (method, path, body, headers = {}) =>
    request(`${srv.url}${path}`, {
      method,
      headers: { ...auth, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  const expect = (res, status, what) => {
    assert.equal(res.status, status, `${what} answered ${res.status}: ${res.text}`);
    return res.json;
  };
  const enc = encodeURIComponent;
  return {
    call,
    create: (obj) => call('POST', '/v1/webhooks', obj),
    async createOk(obj) {
      return expect(await call('POST', '/v1/webhooks', obj), 201, `POST /v1/webhooks ${JSON.stringify(obj)}`);
    },
    list: () => call('GET', '/v1/webhooks'),
    get: (id) => call('GET', `/v1/webhooks/${enc(id)}`),
    async getOk(id) {
      return expect(await call('GET', `/v1/webhooks/${enc(id)}`), 200, `GET /v1/webhooks/${id}`);
    },
    patch: (id, obj) => call('PATCH', `/v1/webhooks/${enc(id)}`, obj),
    async patchOk(id, obj) {
      return expect(await call('PATCH', `/v1/webhooks/${enc(id)}`, obj), 200, `PATCH /v1/webhooks/${id} ${JSON.stringify(obj)}`);
    },
    del: (id) => call('DELETE', `/v1/webhooks/${enc(id)}`),
    rotate: (id) => call('POST', `/v1/webhooks/${enc(id)}/rotate-secret`),
    deliveries: (id, status) => call('GET', `/v1/webhooks/${enc(id)}/deliveries${status ? `?status=${status}` : ''}`),
    /** The deliveries list (asserting 200 and its shape); limit: herald's ?limit= (default 100, at most 1000). */
    async deliveriesOk(id, status, { limit } = {}) {
      const q = [status ? `status=${status}` : '', limit ? `limit=${limit}` : ''].filter(Boolean).join('&');
      const j = expect(await call('GET', `/v1/webhooks/${enc(id)}/deliveries${q ? `?${q}` : ''}`), 200, `GET deliveries of ${id}`);
      assert.ok(j && Array.isArray(j.deliveries), `deliveries body: ${JSON.stringify(j)}`);
      return j.deliveries;
    },
    retry: (id, did) => call('POST', `/v1/webhooks/${enc(id)}/deliveries/${enc(did)}/retry`),
    replay: (id, since) => call('POST', `/v1/webhooks/${enc(id)}/replay`, since === undefined ? {} : { since: String(since) }),
    /** POST /v1/topics/{topic}/events with data as JSON (a string becomes a JSON string) → receipt (asserting 201). */
    async publish(topic, data, { type } = {}) {
      const q = type !== undefined ? `?type=${enc(type)}` : '';
      const t = topic.split('/').map(enc).join('/');
      const res = await call('POST', `/v1/topics/${t}/events${q}`, JSON.stringify(data)); // data is always JSON
      const j = expect(res, 201, `publish to ${topic}`);
      return { ...j, epoch: res.headers['herald-epoch'] };
    },
    /** POST /v1/events → ids (asserting 201). */
    async batch(events) {
      return expect(await call('POST', '/v1/events', { events }), 201, 'POST /v1/events').ids;
    },
    /** The stored event objects of a topic (GET …/events?since=0). */
    async events(topic) {
      const t = topic.split('/').map(enc).join('/');
      return expect(await call('GET', `/v1/topics/${t}/events?since=0&limit=1000`), 200, `poll ${topic}`).events;
    },
  };
}

/** Polls the delivery log until pred(deliveries) is truthy; resolves to the deliveries. */
export async function waitDeliveries(api, id, pred, { status, limit, timeout = 5000, what = 'deliveries' } = {}) {
  const start = Date.now();
  let last;
  for (;;) {
    last = await api.deliveriesOk(id, status, { limit });
    if (pred(last)) return last;
    if (Date.now() - start > timeout) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last delivery log: ${JSON.stringify(last).slice(0, 3000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
