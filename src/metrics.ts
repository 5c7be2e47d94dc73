/**
 * Every metric Portcullis exports, declared in one place. Labels are bounded by configuration (route,
 * issuer and upstream ids, error codes, status codes): never a subject, tenant, path, query or token.
 * What is touched on every request is a HotCounter / HotHistogram (hot-metrics.ts); the rest is prom-client.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { HotCounter, HotHistogram } from './hot-metrics.ts';

export interface IssuerKeyStatus {
  readonly id: string;
  readonly ready: boolean;
  readonly keyCount: number;
  readonly lastSuccessAt: number | undefined;
}

export interface Metrics {
  readonly registry: Registry;
  readonly requests: HotCounter<'route' | 'status'>;
  readonly requestDuration: HotHistogram<'route'>;
  readonly authFailures: HotCounter<'reason'>;
  readonly tokenLifetime: HotHistogram<'issuer'>;
  readonly jwksFetches: Counter<'issuer' | 'outcome' | 'reason'>;
  readonly upstreamDuration: HotHistogram<'upstream' | 'status'>;
  readonly upstreamErrors: HotCounter<'upstream' | 'reason'>;
  readonly configReloads: Counter<'outcome'>;
  readonly policyDecisions: HotCounter<'route' | 'rule' | 'decision'>;
  readonly auditRecords: Counter<'outcome'>;
  readonly auditCheckpoints: Counter<string>;
  readonly auditStoreUp: Gauge<string>;
  readonly auditBlocked: Gauge<string>;
  /** The admin listener reads issuer key state at scrape time through this hook. */
  setIssuerStatusSource(source: () => readonly IssuerKeyStatus[]): void;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'portcullis_' });
  let issuerStatus: () => readonly IssuerKeyStatus[] = () => [];
  const registers = [registry];

  new Gauge({
    name: 'portcullis_jwks_keys',
    help: 'Keys currently usable per issuer (0 means the issuer cannot verify tokens)',
    labelNames: ['issuer'],
    registers,
    collect() {
      this.reset();
      for (const s of issuerStatus()) this.set({ issuer: s.id }, s.keyCount);
    },
  });
  new Gauge({
    name: 'portcullis_jwks_key_age_seconds',
    help: 'Seconds since the issuer key set was last fetched or loaded successfully',
    labelNames: ['issuer'],
    registers,
    collect() {
      this.reset();
      const now = Date.now();
      for (const s of issuerStatus()) {
        if (s.lastSuccessAt !== undefined) this.set({ issuer: s.id }, (now - s.lastSuccessAt) / 1000);
      }
    },
  });
  new Gauge({
    name: 'portcullis_issuer_ready',
    help: '1 when the issuer has keys to verify tokens',
    labelNames: ['issuer'],
    registers,
    collect() {
      this.reset();
      for (const s of issuerStatus()) this.set({ issuer: s.id }, s.ready ? 1 : 0);
    },
  });

  return {
    registry,
    requests: new HotCounter({
      name: 'portcullis_requests_total',
      help: 'Requests answered, by route and HTTP status',
      labelNames: ['route', 'status'],
      registers,
    }),
    requestDuration: new HotHistogram({
      name: 'portcullis_request_duration_seconds',
      help: 'Time from request to the end of the response, by route',
      labelNames: ['route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    authFailures: new HotCounter({
      name: 'portcullis_auth_failures_total',
      help: 'Requests refused by authentication, by precise reason code (ERR_TOKEN_EXPIRED, ...)',
      labelNames: ['reason'],
      registers,
    }),
    tokenLifetime: new HotHistogram({
      name: 'portcullis_token_remaining_seconds',
      help: 'Remaining lifetime (exp - now) of accepted tokens',
      labelNames: ['issuer'],
      buckets: [30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 7 * 86400],
      registers,
    }),
    jwksFetches: new Counter({
      name: 'portcullis_jwks_fetches_total',
      help: 'JWKS and discovery fetches by issuer and outcome (ok / error) with the failure reason',
      labelNames: ['issuer', 'outcome', 'reason'],
      registers,
    }),
    upstreamDuration: new HotHistogram({
      name: 'portcullis_upstream_duration_seconds',
      help: 'Time to the upstream response headers, by upstream and status',
      labelNames: ['upstream', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    upstreamErrors: new HotCounter({
      name: 'portcullis_upstream_errors_total',
      help: 'Upstream failures by upstream and reason code',
      labelNames: ['upstream', 'reason'],
      registers,
    }),
    configReloads: new Counter({
      name: 'portcullis_config_reloads_total',
      help: 'Configuration reloads by outcome (ok / invalid)',
      labelNames: ['outcome'],
      registers,
    }),
    policyDecisions: new HotCounter({
      name: 'portcullis_policy_decisions_total',
      help: 'Policy decisions by route, deciding rule id (empty for default deny) and decision',
      labelNames: ['route', 'rule', 'decision'],
      registers,
    }),
    auditRecords: new Counter({
      name: 'portcullis_audit_records_total',
      help: 'Audit records by outcome: stored, spooled (store down), lost (fail-open only, each with a signed loss record)',
      labelNames: ['outcome'],
      registers,
    }),
    auditCheckpoints: new Counter({ name: 'portcullis_audit_checkpoints_total', help: 'Signed audit checkpoints written', registers }),
    auditStoreUp: new Gauge({ name: 'portcullis_audit_store_up', help: '1 when the audit store accepts records', registers }),
    auditBlocked: new Gauge({
      name: 'portcullis_audit_blocked',
      help: '1 while audit cannot keep records and requests are refused with 503 (fail-closed)',
      registers,
    }),
    setIssuerStatusSource(source) {
      issuerStatus = source;
    },
  };
}
