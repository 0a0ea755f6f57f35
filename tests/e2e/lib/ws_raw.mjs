// A raw WebSocket client (node:net) for conformance tests: the opening handshake is written by
// hand, any frame can be built (any opcode, RSV bits, masked or not, fragmented, lengths encoded
// non-minimally or with a forged length), bytes can be split across TCP writes with delays, and
// server frames are parsed back (close code/reason, TCP close detection).
//
//   const ws = await WsRaw.open(port, { path: '/v1/topics/t/ws' });   // asserts 101
//   await ws.sendFrame({ opcode: OP.TEXT, payload: 'hi' });
//   const f = await ws.readFrame();          // {fin, rsv1, rsv2, rsv3, opcode, masked, payload}
//   const c = await ws.expectClose(1002);    // asserts the close code and that TCP then closes
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import zlib from 'node:zlib';
import { parseResponse } from './http.mjs';

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };
export const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function wsAccept(key) {
  return createHash('sha1').update(key + GUID).digest('base64');
}

export function randomKey() {
  return randomBytes(16).toString('base64');
}

function toBuf(x) {
  if (x === undefined || x === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(x)) return x;
  if (x instanceof Uint8Array) return Buffer.from(x);
  if (typeof x === 'string') return Buffer.from(x, 'utf8');
  return Buffer.from(JSON.stringify(x), 'utf8');
}

/** The close payload: 2-byte code (when given) + reason (string or Buffer). */
export function closePayload(code, reason = '') {
  if (code === undefined || code === null) return Buffer.alloc(0);
  const c = Buffer.alloc(2);
  c.writeUInt16BE(code);
  return Buffer.concat([c, toBuf(reason)]);
}

/**
 * Builds one frame.
 *  opcode, payload (string|Buffer|object→JSON), fin (true), rsv1/rsv2/rsv3 (false),
 *  mask (true), maskKey (4 random bytes), lengthBits: 'min' | 7 | 16 | 64 (how the length is
 *  encoded; 16/64 may be non-minimal), length: the length to announce (default: the real one),
 *  rawLength64: a Buffer of 8 bytes put as the 64-bit length as is.
 */
export function buildFrame({
  opcode = OP.TEXT,
  payload,
  fin = true,
  rsv1 = false,
  rsv2 = false,
  rsv3 = false,
  mask = true,
  maskKey,
  lengthBits = 'min',
  length,
  rawLength64,
} = {}) {
  const data = toBuf(payload);
  const n = length === undefined ? data.length : length;
  let bits = lengthBits;
  if (rawLength64) bits = 64;
  if (bits === 'min') bits = n < 126 ? 7 : n <= 0xffff ? 16 : 64;
  const b0 = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (rsv2 ? 0x20 : 0) | (rsv3 ? 0x10 : 0) | (opcode & 0x0f);
  const m = mask ? 0x80 : 0;
  let head;
  if (bits === 7) {
    head = Buffer.from([b0, m | n]);
  } else if (bits === 16) {
    head = Buffer.alloc(4);
    head[0] = b0;
    head[1] = m | 126;
    head.writeUInt16BE(n, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = m | 127;
    if (rawLength64) rawLength64.copy(head, 2);
    else head.writeBigUInt64BE(BigInt(n), 2);
  }
  if (!mask) return Buffer.concat([head, data]);
  const key = maskKey ? toBuf(maskKey) : randomBytes(4);
  const masked = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) masked[i] = data[i] ^ key[i & 3];
  return Buffer.concat([head, key, masked]);
}

/** RFC 7692 §7.2.1: raw deflate, sync-flushed, without the trailing 00 00 ff ff. */
export function deflateMessage(data) {
  const out = zlib.deflateRawSync(toBuf(data), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.ok(out.subarray(-4).equals(TAIL), 'deflateRawSync with Z_SYNC_FLUSH ends on 00 00 ff ff');
  return out.subarray(0, -4);
}

/** RFC 7692 §7.2.2: appends 00 00 ff ff and inflates. */
export function inflateMessage(data) {
  return zlib.inflateRawSync(Buffer.concat([toBuf(data), TAIL]), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
}

/** The bytes of an opening handshake request. headers: extra lines; null removes a default one. */
export function handshakeRequest({
  path = '/v1/ws',
  method = 'GET',
  host = '127.0.0.1',
  key = randomKey(),
  version = '13',
  protocol,
  extensions,
  headers = {},
  httpVersion = '1.1',
} = {}) {
  const h = {
    Host: host,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': key,
    'Sec-WebSocket-Version': version,
  };
  if (protocol !== undefined) h['Sec-WebSocket-Protocol'] = protocol;
  if (extensions !== undefined) h['Sec-WebSocket-Extensions'] = extensions;
  for (const [k, v] of Object.entries(headers)) {
    const existing = Object.keys(h).find((x) => x.toLowerCase() === k.toLowerCase());
    if (existing) delete h[existing];
    if (v !== null && v !== undefined) h[k] = v;
  }
  let text = `${method} ${path} HTTP/${httpVersion}\r\n`;
  for (const [k, v] of Object.entries(h)) {
    for (const one of Array.isArray(v) ? v : [v]) text += `${k}: ${one}\r\n`;
  }
  if (['POST', 'PUT', 'PATCH'].includes(method) && !Object.keys(h).some((k) => k.toLowerCase() === 'content-length')) {
    text += 'Content-Length: 0\r\n';
  }
  return Buffer.from(`${text}\r\n`, 'latin1');
}

/** Parses the header of a server frame at buf[0..]; null when incomplete. */
export function parseFrame(buf) {
  if (buf.length < 2) return null;
  const b0 = buf[0];
  const b1 = buf[1];
  let len = b1 & 0x7f;
  let pos = 2;
  let lengthBits = 7;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    pos = 4;
    lengthBits = 16;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    const big = buf.readBigUInt64BE(2);
    if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`server frame with a 64-bit length ${big}`);
    len = Number(big);
    pos = 10;
    lengthBits = 64;
  }
  const masked = (b1 & 0x80) !== 0;
  let key = null;
  if (masked) {
    if (buf.length < pos + 4) return null;
    key = buf.subarray(pos, pos + 4);
    pos += 4;
  }
  if (buf.length < pos + len) return null;
  let payload = Buffer.from(buf.subarray(pos, pos + len));
  if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
  return {
    frame: {
      fin: (b0 & 0x80) !== 0,
      rsv1: (b0 & 0x40) !== 0,
      rsv2: (b0 & 0x20) !== 0,
      rsv3: (b0 & 0x10) !== 0,
      opcode: b0 & 0x0f,
      masked,
      lengthBits,
      payload,
    },
    size: pos + len,
  };
}

/** {code, reason (string), reasonBytes} of a close frame payload (code null when empty). */
export function parseClose(payload) {
  if (payload.length === 0) return { code: null, reason: '', reasonBytes: Buffer.alloc(0) };
  if (payload.length === 1) return { code: NaN, reason: '', reasonBytes: payload };
  const reasonBytes = payload.subarray(2);
  return { code: payload.readUInt16BE(0), reason: reasonBytes.toString('utf8'), reasonBytes };
}

export class WsRaw {
  /** Connects and sends the raw handshake; resolves to {ws, response} (any status).
   * opts: those of handshakeRequest, plus key, timeout, trailer (bytes written with the head). */
  static async connect(port, opts = {}) {
    const sock = await new Promise((resolve, reject) => {
      const s = net.connect({ port, host: opts.connectHost || '127.0.0.1' });
      s.setNoDelay(true);
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
    const ws = new WsRaw(sock);
    const key = opts.key || randomKey();
    ws.key = key;
    // trailer: bytes sent in the same TCP write right behind the request head (e.g. a frame).
    const head = handshakeRequest({ ...opts, key });
    await ws.write(opts.trailer ? Buffer.concat([head, opts.trailer]) : head);
    const response = await ws.readResponse(opts.timeout);
    ws.response = response;
    return { ws, response };
  }

  /** Connects, asserts a 101 with the right Sec-WebSocket-Accept, returns the client. */
  static async open(port, opts = {}) {
    const { ws, response } = await WsRaw.connect(port, opts);
    if (response.status !== 101) {
      ws.destroy();
      assert.fail(`handshake to ${opts.path || '/v1/ws'} answered ${response.status}: ${response.text}`);
    }
    assert.equal(response.headers['sec-websocket-accept'], wsAccept(ws.key));
    const ext = response.headers['sec-websocket-extensions'] || '';
    ws.deflate = /permessage-deflate/i.test(ext);
    return ws;
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.tcpClosed = false;
    this.error = null;
    this.waiters = new Set();
    this.deflate = false;
    this.upgraded = false;
    this.received = []; // every frame ever parsed, in order
    this.autoPong = false; // answer server pings (masked pong with the same payload)
    sock.on('data', (d) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this._wake();
    });
    sock.on('error', (e) => {
      this.error = e;
    });
    sock.on('close', () => {
      this.tcpClosed = true;
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
        reject(new Error(`ws_raw: timed out after ${timeout} ms waiting for ${what}; frames so far: ${this.describe()}`));
      }, timeout);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(tick);
      };
      this.waiters.add(tick);
      tick();
    });
  }

  describe() {
    const err = this.error ? ` socket error: ${this.error.code || this.error.message};` : '';
    const rest = this.buf.length ? ` ${this.buf.length} unparsed bytes ${this.buf.subarray(0, 40).toString('hex')};` : '';
    return err + rest + JSON.stringify(
      this.received.slice(-10).map((f) => ({ op: f.opcode, fin: f.fin, rsv1: f.rsv1, len: f.payload.length, head: f.payload.subarray(0, 60).toString('latin1') })),
    );
  }

  readResponse(timeout = 5000) {
    return this._wait(() => {
      const r = parseResponse(this.buf, { closed: this.tcpClosed });
      if (r) {
        this.buf = Buffer.from(r.rest);
        this.upgraded = r.response.status === 101;
        return r.response;
      }
      if (this.tcpClosed) throw new Error(`connection closed before a complete response: ${JSON.stringify(this.buf.toString('latin1'))}`);
      return undefined;
    }, timeout, 'the handshake response');
  }

  /** Writes bytes; resolves false when the socket is already gone. */
  write(data) {
    return new Promise((resolve) => {
      if (this.tcpClosed || this.sock.destroyed) return resolve(false);
      this.sock.write(data, (err) => resolve(!err));
    });
  }

  /** Writes bytes in pieces: `sizes` (array of piece sizes, or a number = piece size), `delay` ms between. */
  async writeSplit(data, { sizes = 1, delay = 5 } = {}) {
    let pos = 0;
    let i = 0;
    while (pos < data.length) {
      const n = Array.isArray(sizes) ? (sizes[i] ?? data.length - pos) : sizes;
      if (!(await this.write(data.subarray(pos, pos + n)))) return false;
      pos += n;
      i++;
      if (pos < data.length && delay) await sleep(delay);
    }
    return true;
  }

  sendFrame(opts) {
    return this.write(buildFrame(opts));
  }

  sendText(text, opts = {}) {
    return this.write(buildFrame({ opcode: OP.TEXT, payload: text, ...opts }));
  }

  /** JSON protocol helper: sends one object as a text frame. */
  sendJson(obj, opts = {}) {
    return this.sendText(JSON.stringify(obj), opts);
  }

  /** A compressed message (RSV1 on its only frame). */
  sendCompressed(text, opts = {}) {
    return this.write(buildFrame({ opcode: OP.TEXT, payload: deflateMessage(text), rsv1: true, ...opts }));
  }

  sendClose(code, reason = '', opts = {}) {
    return this.write(buildFrame({ opcode: OP.CLOSE, payload: closePayload(code, reason), ...opts }));
  }

  /** The next frame from the server; null when TCP closed first. */
  readFrame(timeout = 5000) {
    return this._wait(() => {
      for (;;) {
        const r = parseFrame(this.buf);
        if (!r) break;
        this.buf = this.buf.subarray(r.size);
        this.received.push(r.frame);
        if (this.autoPong && r.frame.opcode === OP.PING) {
          this.write(buildFrame({ opcode: OP.PONG, payload: r.frame.payload }));
          continue;
        }
        return r.frame;
      }
      if (this.tcpClosed) return null;
      return undefined;
    }, timeout, 'a frame');
  }

  /**
   * The next message (control frames are returned as they come, data fragments are joined;
   * compressed messages inflated). {opcode, data (Buffer), text, compressed, frames} or null.
   */
  async readMessage(timeout = 5000) {
    const frames = [];
    const deadline = Date.now() + timeout;
    for (;;) {
      const f = await this.readFrame(Math.max(1, deadline - Date.now()));
      if (f === null) {
        if (frames.length) throw new Error('TCP closed inside a fragmented message');
        return null;
      }
      if (f.opcode >= 0x8) {
        if (frames.length) throw new Error(`a control frame (op ${f.opcode}) was interleaved in a server message`);
        return { opcode: f.opcode, data: f.payload, text: f.payload.toString('utf8'), compressed: false, frames: [f] };
      }
      frames.push(f);
      if (f.fin) break;
    }
    const first = frames[0];
    let data = Buffer.concat(frames.map((f) => f.payload));
    if (first.rsv1) data = inflateMessage(data);
    return { opcode: first.opcode, data, text: data.toString('utf8'), compressed: first.rsv1, frames };
  }

  /** The next text message, skipping server pings (and pongs); parsed as JSON when json is set. */
  async readText(timeout = 5000, { json = false } = {}) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const m = await this.readMessage(Math.max(1, deadline - Date.now()));
      if (m === null) throw new Error(`TCP closed while waiting for a text message; frames: ${this.describe()}`);
      if (m.opcode === OP.PING || m.opcode === OP.PONG) continue;
      if (m.opcode === OP.CLOSE) {
        const c = parseClose(m.data);
        throw new Error(`close ${c.code} "${c.reason}" while waiting for a text message`);
      }
      assert.equal(m.opcode, OP.TEXT);
      return json ? JSON.parse(m.text) : m;
    }
  }

  readJson(timeout = 5000) {
    return this.readText(timeout, { json: true });
  }

  /**
   * Reads until the server's close frame (skipping pings/pongs/data unless strict), then waits
   * for TCP to close. Returns {code, reason, reasonBytes, frame, tcpClosed, skipped}.
   * code: expected code (null = empty close payload); undefined = do not assert.
   */
  async expectClose(code, { timeout = 5000, closeTimeout = 3000, strict = false, reply = false } = {}) {
    const deadline = Date.now() + timeout;
    const skipped = [];
    for (;;) {
      const f = await this.readFrame(Math.max(1, deadline - Date.now()));
      if (f === null) assert.fail(`TCP closed without a close frame (expected ${code}); frames: ${this.describe()}`);
      if (f.opcode === OP.CLOSE) {
        assert.equal(f.fin, true, 'a close frame has FIN');
        assert.equal(f.masked, false, 'server frames are not masked');
        assert.ok(f.payload.length <= 125, `close payload of ${f.payload.length} bytes (max 125)`);
        assert.notEqual(f.payload.length, 1, 'a close payload is never 1 byte');
        const c = parseClose(f.payload);
        if (c.code !== null) {
          assert.ok(![1004, 1005, 1006, 1015].includes(c.code) && c.code >= 1000 && c.code < 5000, `the server sent close code ${c.code}`);
          assert.doesNotThrow(() => new TextDecoder('utf-8', { fatal: true }).decode(c.reasonBytes), 'the close reason is UTF-8');
        }
        if (code !== undefined) assert.equal(c.code, code, `close code (reason "${c.reason}")`);
        if (reply) await this.write(buildFrame({ opcode: OP.CLOSE, payload: f.payload.subarray(0, 2) }));
        const tcpClosed = await this.waitTcpClosed(closeTimeout);
        assert.ok(tcpClosed, `TCP still open ${closeTimeout} ms after the close frame ${c.code}`);
        return { ...c, frame: f, tcpClosed, skipped };
      }
      if (strict) assert.fail(`expected a close frame, got opcode ${f.opcode} ${JSON.stringify(f.payload.subarray(0, 80).toString('latin1'))}`);
      skipped.push(f);
    }
  }

  /** Resolves true when TCP closes within timeout. */
  async waitTcpClosed(timeout = 3000) {
    try {
      await this._wait(() => (this.tcpClosed ? true : undefined), timeout, 'TCP close');
      return true;
    } catch {
      return false;
    }
  }

  /** Asserts nothing arrives (no frame, no close) for ms. Returns the frames that did arrive. */
  async quiet(ms) {
    const before = this.received.length;
    await sleep(ms);
    // parse what is buffered
    for (;;) {
      const r = parseFrame(this.buf);
      if (!r) break;
      this.buf = this.buf.subarray(r.size);
      this.received.push(r.frame);
    }
    return this.received.slice(before);
  }

  pause() {
    this.sock.pause();
  }

  resume() {
    this.sock.resume();
  }

  destroy() {
    this.sock.destroy();
  }
}

/** Closes every client given (for t.after). */
export function destroyAll(list) {
  for (const c of list) {
    try {
      c.destroy();
    } catch {
      /* ignore */
    }
  }
}
