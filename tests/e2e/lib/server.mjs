// Starts the real herald binary for end-to-end tests.
//
//   const srv = await startServer(t, { args: ['--history-size', '5'] });
//   srv.url, srv.port, srv.dataDir, srv.process, srv.stderr
//   await srv.stop()     SIGTERM, expects exit status 0 and no sanitizer report
//   await srv.kill9()    SIGKILL (no checks but the sanitizer scan of what was printed)
//   await srv.restart()  same data directory, same port (SO_REUSEADDR)
//
// The binary is process.env.HERALD_BIN (default build/asan/herald). It runs with ASan/UBSan;
// every line it writes on stderr is kept, and a report from either sanitizer fails the test
// that started the server (checked whenever the process exits and when the test ends).
// Use `test` from this module instead of node:test's: when a test fails, the stderr of the
// servers it started is appended to the failure message.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test as nodeTest } from 'node:test';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const HERALD_BIN = path.resolve(
  REPO_ROOT,
  process.env.HERALD_BIN || path.join('build', 'asan', 'herald'),
);

// Leak checking is on: herald must free what it allocates before a clean exit.
// (Set HERALD_E2E_LEAKS=0 to turn it off while investigating library noise.)
const LEAKS = process.env.HERALD_E2E_LEAKS === '0' ? 0 : 1;
export const SANITIZER_ENV = {
  ASAN_OPTIONS: `detect_leaks=${LEAKS}:abort_on_error=0:halt_on_error=1:print_summary=1`,
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
  LSAN_OPTIONS: 'print_suppressions=0',
};

const SANITIZER_PATTERNS = [
  /ERROR: AddressSanitizer/,
  /ERROR: LeakSanitizer/,
  /runtime error:/,
  /SUMMARY: UndefinedBehaviorSanitizer/,
];

export function sanitizerReport(stderr) {
  return SANITIZER_PATTERNS.some((re) => re.test(stderr));
}

const LISTENING = /^herald listening on http:\/\/([^\s/]+):(\d+)\s*$/;

const serversOfTest = new WeakMap();

function tail(text, max = 12000) {
  return text.length > max ? `…(${text.length - max} bytes cut)…\n${text.slice(-max)}` : text;
}

/** Runs a herald subcommand to completion (for the CLI tests). */
export function runHerald(args, { env = {}, input, timeout = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(HERALD_BIN, args, {
      env: { ...process.env, ...SANITIZER_ENV, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`herald ${args.join(' ')} timed out after ${timeout} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeout);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

/** Spawns a long-running herald subcommand; returns the child and its collected output. */
export function spawnHerald(args, { env = {} } = {}) {
  const child = spawn(HERALD_BIN, args, {
    env: { ...process.env, ...SANITIZER_ENV, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out = { child, stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (d) => (out.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (out.stderr += d));
  out.exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return out;
}

class HeraldServer {
  constructor({ args, env, dataDir, ownsDataDir, startTimeout }) {
    this.args = args;
    this.env = env;
    this.dataDir = dataDir;
    this.ownsDataDir = ownsDataDir;
    this.startTimeout = startTimeout;
    this.stderr = ''; // every run's stderr, in order
    this.stdout = '';
    this.process = null;
    this.port = 0;
    this.host = '127.0.0.1';
    this.url = null;
    this.exitInfo = null;
    this.runs = 0;
    this.disposed = false;
  }

  get running() {
    return this.process !== null && this.exitInfo === null;
  }

  async _spawn(listen) {
    this.runs += 1;
    const argv = ['serve', '--listen', listen, '--data', this.dataDir, ...this.args];
    this.stderr += `\n[e2e] run ${this.runs}: herald ${argv.join(' ')}\n`;
    const child = spawn(HERALD_BIN, argv, {
      env: { ...process.env, ...SANITIZER_ENV, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.process = child;
    this.exitInfo = null;
    const exited = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
    this.exited = exited;
    child.stderr.setEncoding('utf8').on('data', (d) => (this.stderr += d));

    const ready = new Promise((resolve, reject) => {
      let line = '';
      child.stdout.setEncoding('utf8').on('data', (d) => {
        this.stdout += d;
        line += d;
        let nl;
        while ((nl = line.indexOf('\n')) >= 0) {
          const one = line.slice(0, nl);
          line = line.slice(nl + 1);
          const m = LISTENING.exec(one);
          if (m) resolve({ host: m[1], port: Number(m[2]) });
        }
      });
      child.on('error', reject);
      exited.then((info) =>
        reject(new Error(`herald exited before it was ready (code ${info.code}, signal ${info.signal})`)),
      );
    });
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`herald did not print "herald listening on http://HOST:PORT" within ${this.startTimeout} ms`)),
        this.startTimeout,
      );
    });
    try {
      const { host, port } = await Promise.race([ready, timeout]);
      this.host = host;
      this.port = port;
      this.url = `http://${host}:${port}`;
    } catch (e) {
      if (this.running) {
        child.kill('SIGKILL');
        await exited;
      }
      e.message += `\n--- herald stderr ---\n${tail(this.stderr)}`;
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  _checkSanitizers(what) {
    if (sanitizerReport(this.stderr)) {
      throw new Error(`sanitizer report in herald stderr (${what})\n--- herald stderr ---\n${tail(this.stderr, 30000)}`);
    }
  }

  /** SIGTERM (or the given signal); resolves to {code, signal}. Fails on a non-zero exit or a sanitizer report. */
  async stop({ signal = 'SIGTERM', timeout = 15000, expectCode = 0 } = {}) {
    if (!this.process) return this.exitInfo;
    if (this.running) this.process.kill(signal);
    let timer;
    const info = await Promise.race([
      this.exited,
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), timeout);
      }),
    ]);
    clearTimeout(timer);
    if (info === null) {
      this.process.kill('SIGKILL');
      await this.exited;
      throw new Error(`herald did not exit within ${timeout} ms of ${signal}\n--- herald stderr ---\n${tail(this.stderr)}`);
    }
    this._checkSanitizers(`after ${signal}`);
    if (expectCode !== null && (info.code !== expectCode || info.signal !== null)) {
      throw new Error(
        `herald exited with code ${info.code} signal ${info.signal} after ${signal}, expected code ${expectCode}\n--- herald stderr ---\n${tail(this.stderr)}`,
      );
    }
    return info;
  }

  /** SIGKILL, waits for the process to be gone. */
  async kill9() {
    if (this.running) this.process.kill('SIGKILL');
    const info = await this.exited;
    this._checkSanitizers('before kill -9');
    return info;
  }

  /** Starts the server again on the same data directory and port (stopping it first if running). */
  async restart({ graceful = true } = {}) {
    if (this.running) {
      if (graceful) await this.stop();
      else await this.kill9();
    }
    await this._spawn(`${this.host}:${this.port}`);
    return this;
  }

  /** At the end of the test: stops the server if running, checks the sanitizers, removes the data. */
  async dispose() {
    if (this.disposed) return;
    this.disposed = true;
    try {
      if (this.running) await this.stop();
      this._checkSanitizers('at the end of the test');
    } finally {
      if (this.ownsDataDir && process.env.HERALD_E2E_KEEP_DATA !== '1') {
        rmSync(this.dataDir, { recursive: true, force: true });
      }
    }
  }
}

export function freshDataDir() {
  return mkdtempSync(path.join(tmpdir(), 'herald-e2e-'));
}

/**
 * Starts `herald serve --listen 127.0.0.1:0 --data <fresh dir> ...args`.
 * t: the node:test context (the server is disposed when the test ends); may be null.
 */
export async function startServer(t, { args = [], env = {}, dataDir, startTimeout = 15000 } = {}) {
  if (!existsSync(HERALD_BIN)) throw new Error(`herald binary not found at ${HERALD_BIN} (run make build-asan)`);
  const owns = !dataDir;
  const srv = new HeraldServer({
    args,
    env,
    dataDir: dataDir || freshDataDir(),
    ownsDataDir: owns,
    startTimeout,
  });
  if (t) {
    let list = serversOfTest.get(t);
    if (!list) {
      list = [];
      serversOfTest.set(t, list);
      t.after(async () => {
        const errors = [];
        for (const s of list) {
          try {
            await s.dispose();
          } catch (e) {
            errors.push(e);
          }
        }
        if (errors.length) throw errors[0];
      });
    }
    list.push(srv);
  }
  try {
    await srv._spawn('127.0.0.1:0');
  } catch (e) {
    if (owns) rmSync(srv.dataDir, { recursive: true, force: true });
    srv.disposed = true;
    throw e;
  }
  return srv;
}

/** node:test's test(), plus: on failure, the stderr of the servers the test started is appended. */
export function test(name, options, fn) {
  if (typeof options === 'function') {
    fn = options;
    options = {};
  }
  return nodeTest(name, { timeout: 60000, ...options }, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      const list = serversOfTest.get(t) || [];
      for (const s of list) {
        const text = `--- herald stderr (${s.url ?? 'not started'}) ---\n${tail(s.stderr)}`;
        if (e && typeof e === 'object' && typeof e.message === 'string') e.message += `\n${text}`;
        else t.diagnostic(text);
      }
      throw e;
    }
  });
}
