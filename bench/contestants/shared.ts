/**
 * What the Node contestants share: their command line, and the claims -> headers mapping. Each contestant is
 * started by bench/run.ts as `node bench/contestants/<name>.ts --port P --backend URL [--alg A --key FILE
 * --iss I --aud A --claims h=path,... --policy]` and must answer on 127.0.0.1:P until SIGTERM.
 *
 * Contestants are deliberately small and written the way their library's README suggests; they are peers to
 * measure Portcullis against, not products.
 */
import { parseArgs } from 'node:util';
import { POLICY } from '../lib/scenarios.ts';

export interface ContestantOptions {
  readonly port: number;
  /** Origin of the backend, e.g. http://127.0.0.1:18080. */
  readonly backend: string;
  /** JWS alg the key is for (RS256, ES256, EdDSA). */
  readonly alg: string;
  /** Public key (SPKI PEM) file. */
  readonly keyFile: string;
  readonly issuer: string;
  readonly audience: string;
  /** Header name -> dotted claim path, from `--claims x-user-id=sub,x-user-roles=realm_access.roles`. */
  readonly claimHeaders: ReadonlyArray<readonly [string, readonly string[]]>;
  /** Enforce the `policy` scenario's rules (`policyAllows`), answering 403 when they deny. */
  readonly policy: boolean;
}

export function readOptions(argv: readonly string[] = process.argv.slice(2)): ContestantOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: 'string' },
      backend: { type: 'string' },
      alg: { type: 'string', default: 'RS256' },
      key: { type: 'string', default: '' },
      iss: { type: 'string', default: '' },
      aud: { type: 'string', default: '' },
      claims: { type: 'string', default: '' },
      policy: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.port === undefined || values.backend === undefined) {
    throw new Error('usage: --port P --backend URL [--alg A --key FILE --iss I --aud A --claims h=path,...]');
  }
  return {
    port: Number(values.port),
    backend: values.backend,
    alg: values.alg,
    keyFile: values.key,
    issuer: values.iss,
    audience: values.aud,
    claimHeaders: parseClaimHeaders(values.claims),
    policy: values.policy,
  };
}

function parseClaimHeaders(spec: string): Array<readonly [string, readonly string[]]> {
  if (spec === '') return [];
  return spec.split(',').map((pair) => {
    const [header, path] = pair.split('=') as [string, string | undefined];
    if (path === undefined) throw new Error(`--claims: ${pair} is not header=path`);
    return [header.toLowerCase(), path.split('.')] as const;
  });
}

/** The claim at a dotted path as a header value (arrays joined with ","), or undefined. */
export function claimValue(claims: unknown, path: readonly string[]): string | undefined {
  let value: unknown = claims;
  for (const part of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return value.map(String).join(',');
  return undefined;
}

/**
 * The `policy` scenario's rules as a peer writes them by hand after its JWT middleware: a contractor is
 * denied; a log reader with the logs:read scope in tenant acme is allowed; anything else is denied.
 */
export function policyAllows(claims: unknown): boolean {
  const { realm_access: realm, scope, tenant } = (claims ?? {}) as { realm_access?: { roles?: unknown }; scope?: unknown; tenant?: unknown };
  const roles = Array.isArray(realm?.roles) ? (realm.roles as unknown[]) : [];
  if (roles.includes(POLICY.denyRole)) return false;
  const scopes = typeof scope === 'string' ? scope.split(' ') : [];
  return roles.includes(POLICY.role) && scopes.includes(POLICY.scope) && tenant === POLICY.tenant;
}

/** Exit cleanly on SIGTERM / SIGINT so the harness never waits on a contestant. */
export function exitOnSignals(close: () => void): void {
  const stop = (): void => {
    close();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
