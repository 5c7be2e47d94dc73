/**
 * `serve --workers 2`: workers share the port, the primary's admin listener aggregates their metrics;
 * SIGHUP and a change of the watched file reload every worker (an invalid file keeps every worker on the old
 * config); SIGTERM drains the requests in flight on every worker, refuses new connections meanwhile, and
 * exits 0, also when the signal reaches the workers as well (a process group: systemd, Ctrl-C).
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import type { ServerResponse } from 'node:http';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { connect } from 'node:net';
import { CLI, watchOutput } from '../helpers/cli.ts';
import { freePort } from '../helpers/ports.ts';
import { startRecordingUpstream } from '../helpers/upstream.ts';
import { createTestSigner } from '../helpers/keys.ts';

function getClosing(url: string): Promise<number> {
  // connection: close, so each request is a new connection the cluster hands to the next worker.
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

test('two workers serve one port; metrics are aggregated; SIGTERM exits 0', async () => {
  const upstream = await startRecordingUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'pc-workers-'));
  const port = await freePort();
  const adminPort = await freePort();
  const file = join(dir, 'p.yaml');
  writeFileSync(file, `
listen: 127.0.0.1:${port}
admin: 127.0.0.1:${adminPort}
upstreams:
  up: { targets: ["${upstream.origin}"] }
routes:
  - { id: open, match: { path_prefix: / }, auth: { mode: off }, upstream: up }
`);
  const child = spawn(process.execPath, [CLI, 'serve', '-c', file, '--workers', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = watchOutput(child.stdout);
  try {
    // Two workers and the primary each log "portcullis listening".
    await out.waitFor('portcullis listening', 3);
    const statuses = [];
    for (let i = 0; i < 20; i++) statuses.push(await getClosing(`http://127.0.0.1:${port}/x${i}`));
    assert.deepEqual(new Set(statuses), new Set([200]));
    await out.waitFor('"path":"/x19"');
    const pids = new Set(out.text().split('\n').filter((l) => l.includes('"msg":"request"')).map((l) => (JSON.parse(l) as { pid: number }).pid));
    assert.equal(pids.size, 2, 'both workers served requests');
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    assert.match(metrics, /portcullis_requests_total\{route="open",status="200"\} 20/);
  } finally {
    child.kill('SIGTERM');
    const [code] = (await once(child, 'close')) as [number | null];
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, out.text());
  }
});

type LogLine = { pid: number; msg: string; [key: string]: unknown };

/** The log lines of a child, parsed (a line that is not JSON is skipped: the CLI prints nothing else). */
function logLines(text: string): LogLine[] {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);
}

/** Pids that logged `msg`, in order. */
function pidsLogging(text: string, msg: string): number[] {
  return logLines(text).filter((l) => l.msg === msg).map((l) => l.pid);
}

/** Called when the primary starts forking, before any worker serves. */
type Starting = (child: ReturnType<typeof spawn>) => void;

/**
 * Starts `serve --workers 2` and waits until the primary and both workers listen. Returns the child, its
 * output, and the two worker pids (every pid that logged "portcullis listening" other than the primary's).
 */
async function startCluster(t: TestContext, file: string, args: readonly string[] = [], whileStarting?: Starting) {
  const child = spawn(process.execPath, [CLI, 'serve', '-c', file, '--workers', '2', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // A test that failed or timed out before its own shutdown leaves no process behind (the workers exit
  // with the primary: node:cluster ends a worker whose IPC channel closes).
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const out = watchOutput(child.stdout);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  if (whileStarting !== undefined) {
    // The primary logs this once its signal handlers are installed, just before it forks the workers.
    await out.waitFor('"msg":"starting workers"');
    whileStarting(child);
  }
  await out.waitFor('"msg":"portcullis listening"', 3);
  const primary = child.pid!;
  const workers = pidsLogging(out.text(), 'portcullis listening').filter((pid) => pid !== primary);
  assert.equal(new Set(workers).size, 2, out.text());
  const exited = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, out, primary, workers, exited, stderr: () => stderr };
}

type Cluster = Awaited<ReturnType<typeof startCluster>>;

interface Echo {
  status: number;
  /** PORTCULLIS_WORKER_INDEX of the worker that forwarded the request (set_headers x-worker). */
  worker: string;
  /** The route's x-config header as the upstream saw it (absent on a 404). */
  config: string | undefined;
}

/** One request on a new connection; the recording upstream echoes the headers it received. */
function getEcho(url: string, token: string): Promise<Echo> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { connection: 'close', authorization: `Bearer ${token}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status !== 200) return resolve({ status, worker: '', config: undefined });
        const headers = (JSON.parse(body) as { headers: Record<string, string> }).headers;
        resolve({ status, worker: headers['x-worker'] ?? '', config: headers['x-config'] });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Sends requests on new connections until both workers (by their x-worker index) answered at least
 * `perWorker` each, at most `max` requests; returns every answer.
 */
async function askBothWorkers(url: string, token: string, perWorker = 3, max = 60): Promise<Echo[]> {
  const answers: Echo[] = [];
  const count = (w: string) => answers.filter((a) => a.worker === w).length;
  while (answers.length < max && (count('1') < perWorker || count('2') < perWorker)) answers.push(await getEcho(url, token));
  assert.ok(count('1') >= perWorker && count('2') >= perWorker, `both workers answered: ${JSON.stringify(answers)}`);
  return answers;
}

const ISS = 'https://workers.idp.test';

/**
 * Writes the issuer's key set next to the config and returns a token it accepts. The route headers below
 * (set_headers) are rendered for authenticated requests only, hence an issuer.
 */
async function issuerIn(dir: string): Promise<string> {
  const signer = await createTestSigner('ES256');
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(signer.jwks));
  return signer.sign({ iss: ISS, sub: 'tester', exp: Math.floor(Date.now() / 1000) + 600 });
}

/** A route config whose upstream sees x-config (the version) and x-worker (which worker forwarded). */
const versioned = (port: number, upstream: string, version: string) => `
listen: 127.0.0.1:${port}
admin: false
issuers:
  corp: { issuer: ${ISS}, keys: [{ jwks_file: jwks.json }] }
upstreams:
  up: { targets: ["${upstream}"] }
routes:
  - id: open
    match: { path_prefix: /${version}/ }
    upstream: up
    set_headers: { x-config: "${version}", x-worker: "\${PORTCULLIS_WORKER_INDEX:-primary}" }
`;

/** Replaces the file in one step (write aside, rename over), so a watcher never reads it half-written. */
function replaceFile(file: string, text: string): void {
  writeFileSync(`${file}.next`, text);
  renameSync(`${file}.next`, file);
}

/** Numbers the probes of every test, so each probe's access log line is found by its path. */
let probes = 0;

/**
 * Asserts that every answer, from both workers, shows config `now` and none `before`: `/now/` reaches the
 * upstream with x-config: now, and `/before/` is no longer routed (404). A 404 never reaches the upstream, so
 * its worker is read from the access log line of its (unique) path.
 */
async function assertServing(cluster: Cluster, port: number, token: string, now: string, before: string | undefined): Promise<void> {
  const answers = await askBothWorkers(`http://127.0.0.1:${port}/${now}/x`, token);
  assert.deepEqual(new Set(answers.map((a) => `${a.status} ${a.config}`)), new Set([`200 ${now}`]), JSON.stringify(answers));
  if (before === undefined) return;
  const stale = new Map<number, number[]>();
  for (let sent = 0; sent < 60 && (stale.size < 2 || [...stale.values()].some((s) => s.length < 3)); sent++) {
    const path: string = `/${before}/gone-${++probes}`;
    const { status } = await getEcho(`http://127.0.0.1:${port}${path}`, token);
    await cluster.out.waitFor(`"path":"${path}"`);
    const line: LogLine = logLines(cluster.out.text()).find((l) => l.msg === 'request' && l.path === path)!;
    assert.equal(line.status, status);
    stale.set(line.pid, [...(stale.get(line.pid) ?? []), status]);
  }
  assert.deepEqual(new Set(stale.keys()), new Set(cluster.workers), 'both workers answered');
  assert.deepEqual(new Set([...stale.values()].flat()), new Set([404]), `no worker still routes /${before}/`);
}

/**
 * A two-worker cluster serving version "one" of the config; `stop()` ends it with SIGTERM, cleans up and
 * checks it exited 0.
 */
async function versionedCluster(
  t: TestContext,
  args: readonly string[],
  whileStarting?: (at: { file: string; port: number; origin: string; child: ReturnType<typeof spawn> }) => void,
) {
  const upstream = await startRecordingUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'pc-workers-'));
  const port = await freePort();
  const file = join(dir, 'p.yaml');
  const token = await issuerIn(dir);
  writeFileSync(file, versioned(port, upstream.origin, 'one'));
  // Also when the cluster never comes up: a listening upstream would keep the test file from ending.
  t.after(async () => {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const cluster = await startCluster(t, file, args, whileStarting && ((child) => whileStarting({ file, port, origin: upstream.origin, child })));
  const stop = async (): Promise<void> => {
    cluster.child.kill('SIGTERM');
    const [code] = await cluster.exited;
    assert.equal(code, 0, cluster.out.text() + cluster.stderr());
  };
  return { upstream, port, file, token, cluster, stop };
}

test('--workers 2: SIGHUP reloads the primary and both workers; an invalid file keeps both serving the old config', { timeout: 60_000 }, async (t) => {
  // --no-watch: the SIGHUP is the only trigger, so each reload happens exactly once per process.
  const { upstream, port, file, token, cluster, stop } = await versionedCluster(t, ['--no-watch']);
  const { child, out, primary, workers } = cluster;
  try {
    await assertServing(cluster, port, token, 'one', undefined);

    writeFileSync(file, versioned(port, upstream.origin, 'two'));
    child.kill('SIGHUP');
    await out.waitFor('"msg":"config reloaded"', 3);
    assert.deepEqual(new Set(pidsLogging(out.text(), 'config reloaded')), new Set([primary, ...workers]), 'primary and both workers reloaded once each');
    await assertServing(cluster, port, token, 'two', 'one');

    writeFileSync(file, 'routes: [ { id: broken, upstream: nowhere } ]\n');
    child.kill('SIGHUP');
    await out.waitFor('config reload refused', 3);
    assert.deepEqual(new Set(pidsLogging(out.text(), 'config reload refused; the previous config keeps serving')), new Set([primary, ...workers]));
    await assertServing(cluster, port, token, 'two', 'one');

    // The same two workers served throughout: the signals killed none of them (a replacement would have a
    // new pid and would log "worker exited").
    const served = new Set(logLines(out.text()).filter((l) => l.msg === 'request').map((l) => l.pid));
    assert.deepEqual(served, new Set(workers));
    assert.doesNotMatch(out.text(), /worker exited/);
  } finally {
    await stop();
  }
});

test('--workers 2: a change of the watched file reloads both workers; an invalid edit keeps both serving the old config', { timeout: 60_000 }, async (t) => {
  const { upstream, port, file, token, cluster, stop } = await versionedCluster(t, []);
  const { out, primary, workers } = cluster;
  try {
    await assertServing(cluster, port, token, 'one', undefined);

    replaceFile(file, versioned(port, upstream.origin, 'two'));
    // The primary reloads on the file change and signals each worker; wait for all three.
    await out.waitFor('"msg":"config reloaded"', 3);
    assert.deepEqual(new Set(pidsLogging(out.text(), 'config reloaded')), new Set([primary, ...workers]));
    await assertServing(cluster, port, token, 'two', 'one');

    replaceFile(file, 'this: is: not: valid');
    await out.waitFor('config reload refused', 3);
    assert.deepEqual(new Set(pidsLogging(out.text(), 'config reload refused; the previous config keeps serving')), new Set([primary, ...workers]));
    await assertServing(cluster, port, token, 'two', 'one');
    assert.doesNotMatch(out.text(), /worker exited/);
  } finally {
    await stop();
  }
});

test('--workers 2: a SIGHUP while the workers start kills none; each reloads once it serves', { timeout: 60_000 }, async (t) => {
  // The workers are forked at "starting workers" and are then still loading for a while, without signal
  // handlers: a SIGHUP reaching one there would kill it. The primary holds the reload for each worker until
  // it reports ready. The file changes first, so whatever version a worker read, it must end on "two".
  const { cluster, stop, token, port } = await versionedCluster(t, ['--no-watch'], (at) => {
    replaceFile(at.file, versioned(at.port, at.origin, 'two'));
    at.child.kill('SIGHUP');
  });
  const { out, primary, workers } = cluster;
  try {
    // A worker killed by the SIGHUP fails the test at once rather than at the timeout.
    const died = out.waitFor('worker exited').then(
      () => assert.fail(`a worker died:\n${out.text()}`),
      () => undefined, // the output ended (the cluster stopped) without a death
    );
    await Promise.race([out.waitFor('"msg":"config reloaded"', 3), died]);
    const reloaded = pidsLogging(out.text(), 'config reloaded');
    assert.deepEqual(reloaded.toSorted(), [primary, ...workers].toSorted(), 'primary and both workers reloaded, once each');
    assert.doesNotMatch(out.text(), /worker exited/);
    await assertServing(cluster, port, token, 'two', 'one');
  } finally {
    await stop();
  }
});

test('--workers 2: workers killed together are replaced; the primary stays up without an admin listener', { timeout: 60_000 }, async (t) => {
  // admin: false, so once both workers are dead the primary's only handle is the restart timer.
  const { cluster, stop, token, port } = await versionedCluster(t, ['--no-watch']);
  const { out, workers } = cluster;
  try {
    for (const pid of workers) process.kill(pid, 'SIGKILL');
    await out.waitFor('worker exited; starting a replacement', 2);
    // The primary and the two first workers logged it once each; the replacements make five.
    await out.waitFor('"msg":"portcullis listening"', 5);
    const listening = pidsLogging(out.text(), 'portcullis listening');
    assert.equal(new Set(listening.slice(3)).size, 2, 'two new worker pids');
    assert.ok(listening.slice(3).every((pid) => !workers.includes(pid)));
    await assertServing(cluster, port, token, 'one', undefined);
  } finally {
    await stop();
  }
});

/**
 * An upstream that holds every request until `release()`: `arrived(n)` resolves once n requests are held.
 * On release each answers 200 with a body long enough to take several writes, naming its path.
 */
async function startHoldingUpstream() {
  const held: Array<{ res: ServerResponse; worker: string; url: string }> = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const upstream = await startRecordingUpstream({
    handler: (req, res) => {
      held.push({ res, worker: String(req.headers['x-worker']), url: req.url ?? '' });
      for (const w of waiters.filter((w) => held.length >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    },
  });
  return {
    upstream,
    held,
    arrived: (n: number) => (held.length >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }))),
    release() {
      for (const { res, url } of held) {
        const body = bodyFor(url);
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
        res.end(body);
      }
    },
  };
}

const bodyFor = (url: string): Buffer => Buffer.from(`${url}\n`.repeat(20_000));

/** A request whose answer is read in full; resolves with its status and body (or rejects on a socket error). */
function getFull(url: string, token: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** One TCP connection attempt: true if refused; an accepted connection is closed unused. */
function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

const drainConfig = (port: number, upstream: string) => `
listen: 127.0.0.1:${port}
admin: false
issuers:
  corp: { issuer: ${ISS}, keys: [{ jwks_file: jwks.json }] }
# Far longer than the test needs: a request cut short fails the test instead of hiding behind the timeout.
limits: { drain_timeout: 100s }
upstreams:
  up: { targets: ["${upstream}"] }
routes:
  - { id: open, match: { path_prefix: / }, upstream: up, set_headers: { x-worker: "\${PORTCULLIS_WORKER_INDEX:-primary}" } }
`;

/**
 * Opens held requests one at a time (each on its own connection) until both workers hold at least one;
 * returns the pending answers.
 */
async function holdOnBothWorkers(port: number, token: string, holding: Awaited<ReturnType<typeof startHoldingUpstream>>) {
  const answers: Array<Promise<{ status: number; body: Buffer }>> = [];
  const workersHolding = () => new Set(holding.held.map((h) => h.worker));
  while (answers.length < 20 && workersHolding().size < 2) {
    const answer = getFull(`http://127.0.0.1:${port}/held/${answers.length}`, token);
    answer.catch(() => {}); // observed below; no unhandled rejection while the loop runs
    answers.push(answer);
    await holding.arrived(answers.length);
  }
  assert.deepEqual(workersHolding(), new Set(['1', '2']), 'a request is in flight on each worker');
  return answers;
}

/** A two-worker cluster in front of a holding upstream, with a request held on each worker. */
async function holdingCluster(t: TestContext) {
  const holding = await startHoldingUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'pc-workers-'));
  const port = await freePort();
  const file = join(dir, 'p.yaml');
  const token = await issuerIn(dir);
  writeFileSync(file, drainConfig(port, holding.upstream.origin));
  const cluster = await startCluster(t, file, ['--no-watch']);
  const cleanup = async (): Promise<void> => {
    await holding.upstream.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    return { holding, port, cluster, cleanup, answers: await holdOnBothWorkers(port, token, holding) };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/** Releases the held requests; each completes in full, and all three processes stop cleanly with code 0. */
async function assertDrained(holding: Awaited<ReturnType<typeof startHoldingUpstream>>, answers: Array<Promise<{ status: number; body: Buffer }>>, cluster: Cluster): Promise<void> {
  holding.release();
  for (const [i, answer] of answers.entries()) {
    const { status, body } = await answer;
    assert.equal(status, 200);
    assert.ok(body.equals(bodyFor(`/held/${i}`)), `request ${i}: full body`);
  }
  const [code] = await cluster.exited;
  assert.equal(code, 0, cluster.out.text() + cluster.stderr());
  assert.deepEqual(new Set(pidsLogging(cluster.out.text(), 'portcullis stopped')), new Set([cluster.primary, ...cluster.workers]));
  assert.doesNotMatch(cluster.out.text(), /"in_flight_abandoned":[1-9]/);
}

test('--workers 2: SIGTERM to the primary drains in-flight requests on both workers, refuses new connections, exits 0', { timeout: 60_000 }, async (t) => {
  const { holding, port, cluster, cleanup, answers } = await holdingCluster(t);
  const { child, out, workers } = cluster;
  try {
    child.kill('SIGTERM');
    // Each worker logs this line just before it closes its listener (app.stop()).
    await out.waitFor('shutting down: draining in-flight requests', 2);
    assert.deepEqual(new Set(pidsLogging(out.text(), 'shutting down: draining in-flight requests')), new Set(workers));
    // The port refuses connections while both workers still drain: node:cluster's round-robin primary
    // closes the shared listener once every worker closed its own. A connection it accepted just before
    // (handed to a worker that declines it) is dropped unused, as how such a one ends is up to node:cluster;
    // the next attempt is made. A listener left open never refuses, and the test times out.
    let attempts = 0;
    while (!(await connectRefused(port))) attempts++;
    assert.equal(child.exitCode, null, `still draining (${attempts} connections accepted before the refusal)`);
    assert.equal(holding.held.length, answers.length, 'nothing new reached the upstream');

    await assertDrained(holding, answers, cluster);
    assert.equal(holding.upstream.requests.length, answers.length, 'no request but the held ones reached the upstream');
  } finally {
    await cleanup();
  }
});

/*
 * A signal sent to the whole process group (systemd's default KillMode=control-group, a terminal's Ctrl-C)
 * reaches each worker directly and again as the primary's forwarded SIGTERM. The order is made
 * deterministic here: the workers get theirs first and have started draining before the primary gets its own
 * (in a real process group the primary's forward may come later still, never sooner than this).
 */
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`--workers 2: ${signal} to the process group (workers, then primary) drains in-flight requests on both workers, exits 0`, { timeout: 60_000 }, async (t) => {
    const { holding, cluster, cleanup, answers } = await holdingCluster(t);
    const { child, out, workers } = cluster;
    try {
      for (const pid of workers) process.kill(pid, signal);
      await out.waitFor('shutting down: draining in-flight requests', 2);
      child.kill(signal);
      // The primary forwards SIGTERM to the draining workers; neither may die of it or cut its drain short.
      await out.waitFor('"msg":"shutting down: draining workers"');
      await assertDrained(holding, answers, cluster);
      assert.equal(pidsLogging(out.text(), 'shutting down: draining in-flight requests').length, 2, 'one drain per worker');
    } finally {
      await cleanup();
    }
  });
}
