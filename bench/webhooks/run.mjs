#!/usr/bin/env node
// Webhooks-out benchmark for herald (SPEC §7).
//
//   make build && node bench/webhooks/run.mjs            release build, default sizes
//   node bench/webhooks/run.mjs --events 20000 --workers 2 --quick
//   HERALD_BIN=/path/to/herald node bench/webhooks/run.mjs
//
// Scenario 1, throughput: herald (--webhook-allow-private) and a local receiver answering 200 at
// once (a node:http cluster of --workers processes sharing one port); E endpoints registered,
// --events events published in batches of 1,000 via POST /v1/events; measured from the first
// publish to the last delivery received: deliveries/s (target ≥ 5,000/s). One delivery in 200 is
// verified with the npm standardwebhooks package.
//
// Scenario 2, isolation: one healthy endpoint (answers 200 at once) beside 0, 1 or K endpoints
// that never answer (--webhook-timeout 30s, so they stay stuck for the whole run); events
// published at a steady rate for a few seconds; latency publish → arrival at the healthy endpoint,
// p50/p99/max.
//
// Traffic stays on 127.0.0.1. Every run is bounded (each phase has a deadline) and everything
// started is stopped on exit. Prints tables; --json prints the raw results too.
import cluster from 'node:cluster';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(path.join(ROOT, 'package.json'));
const now = () => performance.timeOrigin + performance.now(); // epoch ms, sub-ms, comparable across processes

// ----------------------------------------------------------------------------------- worker
if (cluster.isWorker) {
  const { Webhook } = require('standardwebhooks');
  const secrets = JSON.parse(process.env.WH_SECRETS || '[]');
  let count = 0;
  let verified = 0;
  let verifyFailed = 0;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      res.writeHead(200, { 'Content-Length': '0' });
      res.end();
      count += 1;
      if (count % 200 === 1 && secrets.length) {
        const body = Buffer.concat(chunks);
        const ok = secrets.some((s) => {
          try {
            new Webhook(s).verify(body, req.headers);
            return true;
          } catch {
            return false;
          }
        });
        if (ok) verified += 1;
        else verifyFailed += 1;
      }
    });
  });
  server.keepAliveTimeout = 60000;
  server.listen(Number(process.env.WH_PORT), '127.0.0.1', () => process.send({ ready: true }));
  setInterval(() => process.send({ count, verified, verifyFailed }), 50).unref();
  process.on('message', (m) => {
    if (m && m.secrets) secrets.splice(0, secrets.length, ...m.secrets);
  });
}

// ----------------------------------------------------------------------------------- primary
function args() {
  const a = process.argv.slice(2);
  const opt = { events: 50000, workers: Math.min(4, Math.max(1, os.cpus().length - 2)), endpoints: [1, 4], rate: 500, seconds: 4, hanging: [0, 1, 16], json: false };
  for (let i = 0; i < a.length; i++) {
    const v = a[i + 1];
    if (a[i] === '--events') (opt.events = Number(v)), i++;
    else if (a[i] === '--workers') (opt.workers = Number(v)), i++;
    else if (a[i] === '--endpoints') (opt.endpoints = v.split(',').map(Number)), i++;
    else if (a[i] === '--rate') (opt.rate = Number(v)), i++;
    else if (a[i] === '--seconds') (opt.seconds = Number(v)), i++;
    else if (a[i] === '--hanging') (opt.hanging = v.split(',').map(Number)), i++;
    else if (a[i] === '--json') opt.json = true;
    else if (a[i] === '--quick') Object.assign(opt, { events: 10000, endpoints: [1], seconds: 2, hanging: [0, 1] });
    else if (a[i] === '--help' || a[i] === '-h') {
      console.log('usage: node bench/webhooks/run.mjs [--events N] [--workers W] [--endpoints 1,4] [--rate R] [--seconds S] [--hanging 0,1,16] [--quick] [--json]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a[i]}`);
  }
  return opt;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
function call(base, method, p, body) {
  return new Promise((resolve, reject) => {
    const buf = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const req = http.request(`${base}${p}`, { method, agent, headers: buf ? { 'Content-Type': 'application/json', 'Content-Length': buf.length } : {} }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json;
        try {
          json = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode, json, text });
      });
    });
    req.setTimeout(30000, () => req.destroy(new Error(`${method} ${p} timed out`)));
    req.on('error', reject);
    req.end(buf);
  });
}
async function must(res, status, what) {
  const r = await res;
  if (r.status !== status) throw new Error(`${what}: ${r.status} ${r.text}`);
  return r.json;
}

const children = new Set();
function cleanup() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

async function startHerald(bin, extra) {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'herald-whbench-'));
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir, '--webhook-allow-private', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`herald did not start: ${stderr}`)), 15000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /herald listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`herald exited (${code}): ${stderr}`)));
  });
  return {
    url,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(() => {
          child.kill('SIGKILL');
          r();
        }, 15000);
        child.on('exit', () => {
          clearTimeout(t);
          r();
        });
        if (child.exitCode !== null) r();
      });
      children.delete(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
    stderr: () => stderr,
  };
}

async function startCluster(workers) {
  const port = await new Promise((resolve) => {
    const s = http.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  cluster.schedulingPolicy = cluster.SCHED_NONE; // let the kernel spread connections
  cluster.setupPrimary({ exec: fileURLToPath(import.meta.url), silent: false });
  const state = new Map();
  const list = [];
  await Promise.all(
    Array.from({ length: workers }, () => {
      const w = cluster.fork({ WH_PORT: String(port) });
      children.add(w.process);
      list.push(w);
      state.set(w.id, { count: 0, verified: 0, verifyFailed: 0 });
      return new Promise((resolve) => {
        w.on('message', (m) => {
          if (m.ready) resolve();
          else state.set(w.id, m);
        });
      });
    }),
  );
  return {
    port,
    setSecrets: (secrets) => list.forEach((w) => w.send({ secrets })),
    totals() {
      const t = { count: 0, verified: 0, verifyFailed: 0 };
      for (const s of state.values()) for (const k of Object.keys(t)) t[k] += s[k];
      return t;
    },
    async stop() {
      for (const w of list) {
        w.kill('SIGKILL');
        children.delete(w.process);
      }
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function throughput(bin, opt, endpoints, receivers) {
  const herald = await startHerald(bin, []);
  try {
    const base = receivers.totals().count;
    const secrets = [];
    for (let i = 0; i < endpoints; i++) {
      const ep = await must(call(herald.url, 'POST', '/v1/webhooks', { url: `http://127.0.0.1:${receivers.port}/e${i}`, topics: ['bench/**'] }), 201, 'create endpoint');
      secrets.push(ep.secret);
    }
    receivers.setSecrets(secrets);
    await sleep(100);
    const expected = opt.events * endpoints;
    const t0 = now();
    let sent = 0;
    const batches = [];
    for (let i = 0; i < opt.events; i += 1000) batches.push(Math.min(1000, opt.events - i));
    let next = 0;
    const publisher = async () => {
      while (next < batches.length) {
        const n = batches[next++];
        const events = Array.from({ length: n }, (_, j) => ({ topic: `bench/${j % 16}`, type: 'tick', data: { n: sent + j, pad: 'x'.repeat(64) } }));
        await must(call(herald.url, 'POST', '/v1/events', { events }), 201, 'publish batch');
        sent += n;
      }
    };
    await Promise.all([publisher(), publisher()]);
    const tPublished = now();
    const deadline = t0 + Math.max(20000, expected); // give up below 1,000 deliveries/s
    let got = 0;
    while ((got = receivers.totals().count - base) < expected && now() < deadline) await sleep(20);
    const t1 = now();
    const v = receivers.totals();
    return {
      scenario: `throughput, ${endpoints} endpoint${endpoints > 1 ? 's' : ''}`,
      events: opt.events,
      expected,
      delivered: got,
      publishS: (tPublished - t0) / 1000,
      elapsedS: (t1 - t0) / 1000,
      perSecond: got / ((t1 - t0) / 1000),
      verified: v.verified,
      verifyFailed: v.verifyFailed,
      complete: got >= expected,
    };
  } finally {
    await herald.stop();
  }
}

function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

async function isolation(bin, opt, hanging) {
  // In-process receiver (same clock as the publisher): /ok answers at once, /hang never.
  const arrivals = new Map();
  const stuck = new Set();
  const srv = http.createServer((req, res) => {
    if (req.url.startsWith('/hang')) {
      stuck.add(res);
      return;
    }
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const at = now();
      res.writeHead(200, { 'Content-Length': '0' });
      res.end();
      try {
        const id = JSON.parse(Buffer.concat(chunks)).id;
        if (!arrivals.has(id)) arrivals.set(id, at);
      } catch {}
    });
  });
  srv.keepAliveTimeout = 60000;
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  const herald = await startHerald(bin, ['--webhook-timeout', '30s', '--webhook-retry-schedule', '30s']);
  try {
    await must(call(herald.url, 'POST', '/v1/webhooks', { url: `http://127.0.0.1:${port}/ok`, topics: ['iso/**'] }), 201, 'create');
    for (let i = 0; i < hanging; i++) {
      await must(call(herald.url, 'POST', '/v1/webhooks', { url: `http://127.0.0.1:${port}/hang${i}`, topics: ['iso/**'] }), 201, 'create');
    }
    const sentAt = new Map();
    const total = Math.round(opt.rate * opt.seconds);
    const interval = 1000 / opt.rate;
    const t0 = now();
    const inflight = new Set();
    for (let i = 0; i < total; i++) {
      const due = t0 + i * interval;
      const wait = due - now();
      if (wait > 1) await sleep(wait);
      const at = now();
      const p = call(herald.url, 'POST', '/v1/topics/iso/x/events', { i }).then((r) => {
        if (r.status !== 201) throw new Error(`publish ${r.status} ${r.text}`);
        sentAt.set(r.json.id, at);
      });
      inflight.add(p);
      p.finally(() => inflight.delete(p));
    }
    await Promise.all(inflight);
    const deadline = now() + 5000;
    while (arrivals.size < sentAt.size && now() < deadline) await sleep(20);
    const lat = [...sentAt].filter(([id]) => arrivals.has(id)).map(([id, at]) => arrivals.get(id) - at);
    return {
      scenario: `isolation, ${hanging} hanging endpoint${hanging === 1 ? '' : 's'}`,
      hanging,
      published: sentAt.size,
      delivered: lat.length,
      p50: pct(lat, 50),
      p99: pct(lat, 99),
      max: lat.length ? Math.max(...lat) : NaN,
      stuckAttempts: stuck.size,
    };
  } finally {
    for (const r of stuck) r.socket?.destroy();
    srv.closeAllConnections?.();
    srv.close();
    await herald.stop();
  }
}

function table(rows, cols) {
  const w = cols.map(([h, f]) => Math.max(h.length, ...rows.map((r) => String(f(r)).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ');
  console.log(line(cols.map(([h]) => h)));
  console.log(w.map((n) => '-'.repeat(n)).join('  '));
  for (const r of rows) console.log(line(cols.map(([, f]) => f(r))));
}

async function main() {
  const opt = args();
  const bin = process.env.HERALD_BIN || path.join(ROOT, 'build/release/herald');
  if (!existsSync(bin)) {
    console.error(`herald not found at ${bin}: run \`make build\` (or set HERALD_BIN)`);
    process.exit(2);
  }
  const overall = setTimeout(() => {
    console.error('bench: overall time limit (10 min) reached, stopping');
    process.exit(3);
  }, 600000);
  overall.unref();
  console.log(`herald webhooks bench — ${bin}; ${os.cpus().length} CPUs; receiver: ${opt.workers} node:http worker(s)\n`);

  const receivers = await startCluster(opt.workers);
  const tp = [];
  try {
    for (const e of opt.endpoints) tp.push(await throughput(bin, { ...opt, events: Math.ceil(opt.events / e) }, e, receivers));
  } finally {
    await receivers.stop();
  }
  table(tp, [
    ['scenario', (r) => r.scenario],
    ['events', (r) => r.events],
    ['deliveries', (r) => `${r.delivered}/${r.expected}`],
    ['publish s', (r) => r.publishS.toFixed(2)],
    ['total s', (r) => r.elapsedS.toFixed(2)],
    ['deliveries/s', (r) => Math.round(r.perSecond)],
    ['≥5k/s', (r) => (r.perSecond >= 5000 && r.complete ? 'yes' : 'NO')],
    ['sampled verify', (r) => `${r.verified} ok, ${r.verifyFailed} bad`],
  ]);
  console.log('');

  const iso = [];
  for (const h of opt.hanging) iso.push(await isolation(bin, opt, h));
  console.log(`healthy endpoint latency, publish → arrival, ${opt.rate} events/s for ${opt.seconds} s (--webhook-timeout 30s, defaults for concurrency: 64 global, 4 per endpoint)`);
  table(iso, [
    ['scenario', (r) => r.scenario],
    ['delivered', (r) => `${r.delivered}/${r.published}`],
    ['p50 ms', (r) => r.p50.toFixed(1)],
    ['p99 ms', (r) => r.p99.toFixed(1)],
    ['max ms', (r) => r.max.toFixed(1)],
    ['stuck attempts', (r) => r.stuckAttempts],
  ]);
  if (opt.json) console.log(JSON.stringify({ throughput: tp, isolation: iso }, null, 1));
  agent.destroy();
  process.exit(0);
}

if (cluster.isPrimary) await main();
