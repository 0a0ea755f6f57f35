// SPEC §10: the command line (version, publish, subscribe, --help).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startServer, test, runHerald, spawnHerald, REPO_ROOT } from './lib/server.mjs';
import { get, publishOk, waitFor, sleep, ID_RE, TIME_RE } from './lib/http.mjs';

const VERSION = /project\(herald VERSION (\d+\.\d+\.\d+)/.exec(readFileSync(path.join(REPO_ROOT, 'CMakeLists.txt'), 'utf8'))[1];

const lines = (out) => out.split('\n').filter((l) => l.length > 0);

function assertClean(res, what) {
  assert.doesNotMatch(res.stderr, /ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/, `${what}: sanitizer report\n${res.stderr}`);
}

async function history(base, topic) {
  const r = await get(`${base}/v1/topics/${topic}/events?since=0`);
  assert.equal(r.status, 200);
  return r.json.events;
}

test('herald version prints "herald X.Y.Z"', async () => {
  const r = await runHerald(['version']);
  assertClean(r, 'version');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `herald ${VERSION}\n`);
});

test('--help works for herald, serve, publish and subscribe', async () => {
  const cases = [
    [['--help'], ['serve', 'publish', 'subscribe', 'version']],
    [['serve', '--help'], ['--listen', '--data', '--history-size', '--sse-heartbeat', '--header-timeout', '--max-connections']],
    [['publish', '--help'], ['--url']],
    [['subscribe', '--help'], ['--via', '--since', '--url']],
  ];
  for (const [args, mentions] of cases) {
    const r = await runHerald(args);
    assertClean(r, args.join(' '));
    assert.equal(r.code, 0, `herald ${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stdout.length > 20, `herald ${args.join(' ')} prints help on stdout`);
    for (const m of mentions) assert.ok(r.stdout.includes(m), `herald ${args.join(' ')} mentions ${m}:\n${r.stdout}`);
  }
});

test('unknown command or flag: non-zero exit and a message on stderr', async () => {
  for (const args of [['frobnicate'], ['serve', '--no-such-flag'], ['subscribe', 't', '--via', 'carrier-pigeon']]) {
    const r = await runHerald(args, { timeout: 5000 });
    assertClean(r, args.join(' '));
    assert.notEqual(r.code, 0, `herald ${args.join(' ')} exit code`);
    assert.ok(r.stderr.trim().length > 0, `herald ${args.join(' ')} explains on stderr`);
  }
});

test('herald publish: argument and stdin, JSON when it parses, else text; --url and HERALD_URL', async (t) => {
  const srv = await startServer(t);
  const a = await runHerald(['publish', '--url', srv.url, 'cli/pub', '{"a":[1,2]}']);
  assertClean(a, 'publish');
  assert.equal(a.code, 0, a.stderr);
  const b = await runHerald(['publish', 'cli/pub', 'just text'], { env: { HERALD_URL: srv.url } });
  assert.equal(b.code, 0, b.stderr);
  const c = await runHerald(['publish', '--url', srv.url, 'cli/pub'], { input: '{"from":"stdin"}' });
  assert.equal(c.code, 0, c.stderr);
  const d = await runHerald(['publish', '--url', srv.url, 'cli/pub'], { input: 'stdin text' });
  assert.equal(d.code, 0, d.stderr);
  const evs = await history(srv.url, 'cli/pub');
  assert.deepEqual(evs.map((e) => e.data), [{ a: [1, 2] }, 'just text', { from: 'stdin' }, 'stdin text']);
  // What it prints names the stored event.
  for (const [r, ev] of [[a, evs[0]], [b, evs[1]]]) {
    const out = r.stdout.trim();
    if (out.startsWith('{')) {
      const j = JSON.parse(out);
      assert.equal(j.id, ev.id);
    } else {
      assert.ok(out.includes(ev.id), `publish output mentions the id ${ev.id}: ${out}`);
    }
  }
});

test('herald publish to a bad topic or an unreachable server fails with a message', async (t) => {
  const srv = await startServer(t);
  const bad = await runHerald(['publish', '--url', srv.url, 'bad topic', '1']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /invalid_topic|topic/i);
  await srv.stop();
  const down = await runHerald(['publish', '--url', srv.url, 'x', '1'], { timeout: 10000 });
  assert.notEqual(down.code, 0);
  assert.ok(down.stderr.trim().length > 0);
});

async function subscribeRoundTrip(srv, via) {
  for (let i = 0; i < 3; i++) await publishOk(srv.url, `cli/${via}`, { i }, { type: i === 1 ? 'status' : undefined });
  const r = await runHerald(['subscribe', '--url', srv.url, `cli/${via}`, '--via', via, '--since', '0', '--count', '3']);
  assertClean(r, `subscribe --via ${via}`);
  assert.equal(r.code, 0, r.stderr);
  return lines(r.stdout).map((l) => JSON.parse(l));
}

test('herald subscribe --via sse --since 0 --count 3 prints {"id","type","data"} lines', async (t) => {
  const srv = await startServer(t);
  const out = await subscribeRoundTrip(srv, 'sse');
  assert.deepEqual(out, [
    { id: '1', type: 'message', data: { i: 0 } },
    { id: '2', type: 'status', data: { i: 1 } },
    { id: '3', type: 'message', data: { i: 2 } },
  ]);
});

for (const via of ['poll', 'longpoll']) {
  test(`herald subscribe --via ${via} --since 0 --count 3 prints full event objects`, async (t) => {
    const srv = await startServer(t);
    const out = await subscribeRoundTrip(srv, via);
    const stored = await history(srv.url, `cli/${via}`);
    assert.equal(out.length, 3);
    assert.deepEqual(out, stored);
    for (const ev of out) {
      assert.match(ev.id, ID_RE);
      assert.match(ev.time, TIME_RE);
    }
  });
}

for (const via of ['sse', 'longpoll', 'poll']) {
  test(`herald subscribe --via ${via}: live events published after it started, several topics`, async (t) => {
    const srv = await startServer(t);
    const start = await publishOk(srv.url, 'live/a', 'old');
    const sub = spawnHerald(['subscribe', '--url', srv.url, 'live/a', 'live/b', '--via', via, '--since', start.id, '--count', '3']);
    t.after(() => sub.child.kill('SIGKILL'));
    await sleep(300);
    const want = [];
    for (const [topic, data] of [['live/a', 'x'], ['live/c', 'not subscribed'], ['live/b', 'y'], ['live/a', 'z']]) {
      const rec = await publishOk(srv.url, topic, data, { contentType: 'text/plain' });
      if (topic !== 'live/c') want.push(rec.id);
    }
    const res = await Promise.race([sub.exited, sleep(10000).then(() => null)]);
    assert.ok(res, `subscribe did not exit after 3 events; stdout:\n${sub.stdout}\nstderr:\n${sub.stderr}`);
    assert.equal(res.code, 0, sub.stderr);
    assertClean(sub, 'subscribe');
    const out = lines(sub.stdout).map((l) => JSON.parse(l));
    assert.deepEqual(out.map((e) => e.id), want);
    assert.deepEqual(out.map((e) => e.data), ['x', 'y', 'z']);
  });
}

test('herald subscribe --via sse without --since is live only', async (t) => {
  const srv = await startServer(t);
  await publishOk(srv.url, 'only-live', 'old');
  const sub = spawnHerald(['subscribe', '--url', srv.url, 'only-live', '--via', 'sse', '--count', '1']);
  t.after(() => sub.child.kill('SIGKILL'));
  const published = [];
  await waitFor(async () => {
    if (sub.stdout.includes('\n')) return true;
    published.push((await publishOk(srv.url, 'only-live', `n${published.length}`, { contentType: 'text/plain' })).id);
    await sleep(100);
    return false;
  }, { timeout: 10000, message: 'a live event printed' });
  const res = await sub.exited;
  assert.equal(res.code, 0, sub.stderr);
  const [ev] = lines(sub.stdout).map((l) => JSON.parse(l));
  assert.ok(published.includes(ev.id), `printed ${ev.id}, published ${published}`);
  assert.notEqual(ev.data, 'old');
});
