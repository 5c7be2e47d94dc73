/**
 * The proxy's side of the audit log: opens the store, loads the signing and redaction keys, starts the
 * writer, and turns each finished request (allowed or denied) into one record. Admission is asked before
 * forwarding: in fail-closed mode a request is never forwarded unaudited.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { loadAuditSigner, loadTrustedKeys } from './keys.ts';
import { openAuditStore } from './open-store.ts';
import { pruneAudit } from './prune.ts';
import { prepareAuditRecord } from './record.ts';
import type { AuditInput } from './record.ts';
import { createRedactor } from './redact.ts';
import type { Redactor } from './redact.ts';
import type { AuditStore } from './store.ts';
import { createAuditWriter } from './writer.ts';
import type { AuditWriter } from './writer.ts';
import type { AuditConfig, SecretSource } from '../config/types.ts';
import type { Logger } from '../logger.ts';
import type { Metrics } from '../metrics.ts';

/** Trusted-hop verdicts remembered (the map is cleared when full). */
const TRUSTED_MEMO = 1024;

/** What the pipeline knows about a finished request; the sink maps it onto the record allowlist. */
export interface AuditedRequest {
  readonly eventId: string;
  readonly requestId: string;
  readonly allowed: boolean;
  readonly reason: string | undefined;
  readonly ruleId: string | undefined;
  readonly method: string;
  readonly path: string;
  readonly routeId: string | undefined;
  readonly status: number;
  readonly durationMs: number;
  readonly clientIp: string;
  readonly userAgent: string | undefined;
  readonly upstream: string | undefined;
  readonly traceId: string | undefined;
  readonly claims: Record<string, unknown> | undefined;
  readonly roles: readonly string[] | undefined;
  readonly jwt: { readonly alg: string; readonly kid?: string } | undefined;
  readonly loki: { readonly original?: string; readonly enforced?: string; readonly tenant?: string; readonly start?: string; readonly end?: string } | undefined;
}

export interface AuditSink {
  readonly store: AuditStore;
  readonly redactor: Redactor | undefined;
  /** False when the record could not be kept (fail-closed, store and spool full): answer 503. */
  admit(): boolean;
  record(request: AuditedRequest): void;
  /** The client address for the record: X-Forwarded-For is believed only from configured hops. */
  clientIp(req: IncomingMessage, peer: string): string;
  /** Resolves once every record written so far is stored (or spooled): the audit API reads its own writes. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

async function readSecret(source: SecretSource, env: NodeJS.ProcessEnv): Promise<Uint8Array> {
  if ('file' in source) return new Uint8Array(Buffer.from((await readFile(source.file, 'utf8')).replace(/\r?\n$/, '')));
  const value = env[source.env];
  if (value === undefined || value === '') throw new Error(`audit: environment variable ${source.env} is not set`);
  return new TextEncoder().encode(value);
}

export async function createAuditSink(config: AuditConfig, deps: { metrics: Metrics; logger: Logger; env: NodeJS.ProcessEnv }): Promise<AuditSink> {
  const { metrics, logger } = deps;
  const signer = await loadAuditSigner({ ...config.signingKey, kid: config.keyId, environment: deps.env });
  const redactor = config.redaction === undefined ? undefined : createRedactor({
    keyId: config.redaction.keyId,
    key: await readSecret(config.redaction.key, deps.env),
    fields: config.redaction.fields,
    logqlLabels: config.redaction.logqlLabels,
    emails: config.redaction.emails,
  });
  // Off the event loop: with SQLite's per-batch fsync on it, every request waited for the disk.
  const store = await openAuditStore(config.store, { appendOffThread: true });
  const writer: AuditWriter = await createAuditWriter({
    store,
    signer,
    mode: config.mode,
    checkpointEvery: config.checkpointEvery,
    checkpointIntervalMs: config.checkpointIntervalMs,
    queueMax: config.queueMax,
    batchWaitMs: config.batchWaitMs,
    // A spool belongs to one writer: cluster workers each get their own, kept across restarts by index.
    spool: config.spool === undefined ? undefined : {
      dir: deps.env.PORTCULLIS_WORKER_INDEX ? join(config.spool.dir, `worker-${deps.env.PORTCULLIS_WORKER_INDEX}`) : config.spool.dir,
      maxBytes: config.spool.maxBytes,
    },
    anchorFile: config.anchorFile,
    observer: {
      batchPersisted: (info) => metrics.auditRecords.inc({ outcome: info.target === 'store' ? 'stored' : 'spooled' }, info.records),
      recordsLost: (count, reason) => {
        metrics.auditRecords.inc({ outcome: 'lost' }, count);
        logger.error({ count, reason }, 'audit records lost (a signed loss record says so)');
      },
      storeFailed: (error) => {
        metrics.auditStoreUp.set(0);
        logger.error({ err: error }, 'audit store unavailable; spooling');
      },
      storeRecovered: () => {
        metrics.auditStoreUp.set(1);
        logger.info('audit store recovered');
      },
      blockedChanged: (blocked) => {
        metrics.auditBlocked.set(blocked ? 1 : 0);
        if (blocked) logger.error('audit cannot keep records: requests answer 503 until it can (fail-closed)');
        else logger.info('audit accepting records again');
      },
      checkpointSigned: () => metrics.auditCheckpoints.inc(),
      secretsRedacted: (count) => logger.warn({ count }, 'audit: credential-shaped values were scrubbed from a record'),
      internalError: (error) => logger.error({ err: error }, 'audit writer internal error'),
    },
  });
  metrics.auditStoreUp.set(1);

  const trusted = new BlockList();
  for (const hop of config.trustedHops) {
    const [address, bits] = hop.split('/') as [string, string | undefined];
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) trusted.addAddress(address, family);
    else trusted.addSubnet(address, Number(bits), family);
  }
  // BlockList.check builds a native socket address per call (about 5k instructions per audited request
  // under callgrind); a connection's peer repeats for every request on it, so verdicts are remembered,
  // for at most TRUSTED_MEMO addresses (X-Forwarded-For entries are the client's to choose).
  const verdicts = new Map<string, boolean>();
  const checkTrusted = (ip: string): boolean => {
    let verdict = verdicts.get(ip);
    if (verdict === undefined) {
      const family = isIP(ip);
      verdict = family !== 0 && trusted.check(ip, family === 6 ? 'ipv6' : 'ipv4');
      if (verdicts.size >= TRUSTED_MEMO) verdicts.clear();
      verdicts.set(ip, verdict);
    }
    return verdict;
  };
  const isTrusted = config.trustedHops.length === 0 ? (): boolean => false : checkTrusted;

  let retention: NodeJS.Timeout | undefined;
  if (config.retention !== undefined) {
    const policy = config.retention;
    const trustedKeys = await loadTrustedKeys(policy.trustedKeysFile);
    retention = setInterval(() => {
      pruneAudit({ store, signer, trustedKeys, before: new Date(Date.now() - policy.olderThanMs) }).then(
        (result) => logger.info({ pruned: result.pruned, refused: result.refused }, 'audit retention ran'),
        (error: unknown) => logger.error({ err: error }, 'audit retention failed'),
      );
    }, policy.everyMs);
    retention.unref();
  }

  return {
    store,
    redactor,
    admit: () => writer.admit(),
    flush: () => writer.flush(),
    clientIp(req, peer) {
      if (!isTrusted(peer)) return peer;
      // Walk X-Forwarded-For from the right, skipping our own trusted hops: the first other address is
      // the client as far as a hop we trust can tell.
      const chain = String(req.headers['x-forwarded-for'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
      for (let i = chain.length - 1; i >= 0; i--) if (!isTrusted(chain[i]!)) return chain[i]!;
      return chain[0] ?? peer;
    },
    record(r) {
      const claims = r.claims;
      const input: AuditInput = {
        'event.id': r.eventId,
        'event.type': r.allowed ? 'allowed' : 'denied',
        'event.reason': r.reason,
        'event.duration': Math.round(r.durationMs * 1e6),
        'rule.id': r.ruleId,
        'user.id': typeof claims?.sub === 'string' ? claims.sub : undefined,
        'user.roles': r.roles === undefined ? undefined : [...r.roles],
        'user.email': typeof claims?.email === 'string' ? claims.email : undefined,
        'jwt.iss': typeof claims?.iss === 'string' ? claims.iss : undefined,
        'jwt.aud': claims?.aud as string | string[] | undefined,
        'jwt.kid': r.jwt?.kid,
        'jwt.alg': r.jwt?.alg,
        'jwt.exp': typeof claims?.exp === 'number' ? claims.exp : undefined,
        'http.request.id': r.requestId,
        'http.request.method': r.method,
        'url.path': r.path,
        'http.route': r.routeId,
        'http.response.status_code': r.status,
        'client.ip': r.clientIp,
        'user_agent.original': r.userAgent,
        'destination.address': r.upstream,
        'trace.id': r.traceId,
        'logql.query': r.loki?.enforced,
        'logql.original': r.loki?.original,
        'logql.start': r.loki?.start,
        'logql.end': r.loki?.end,
        tenant: r.loki?.tenant,
      } as AuditInput;
      writer.write(prepareAuditRecord(input, { redactor }));
    },
    async close() {
      clearInterval(retention);
      const result = await writer.close();
      if (result.unpersisted > 0) logger.error({ unpersisted: result.unpersisted }, 'audit records not persisted at shutdown');
      await store.close();
    },
  };
}
