/**
 * The trusted issuers, each bound to its own key source (DESIGN §1: a key of one IdP never verifies a token
 * claiming another). A token's unverified `iss` only selects the issuer; that issuer's keys then decide.
 *
 * Hot reload: a new registry built with `previous` shares the remote JWK Sets of issuers whose fetch
 * settings did not change, so a reload does not refetch every JWKS. Shared sets are reference counted:
 * each registry holding one counts once, and `close()` of a registry releases its references; a set is
 * closed when the last registry using it is closed. Static keys are always re-read (a reload is often
 * made precisely because a key file changed, and reading a local file is cheap).
 */
import { isDeepStrictEqual } from 'node:util';
import type { IssuerConfig } from '../config/types.ts';
import { createRemoteJwks } from './jwks-remote.ts';
import type { RemoteJwks } from './jwks-remote.ts';
import { createKeySource } from './key-source.ts';
import type { KeySource, KeySourceObserver } from './key-source.ts';
import { loadStaticKeys } from './static-keys.ts';
import type { LoadedKey } from './static-keys.ts';

export interface Issuer {
  readonly config: IssuerConfig;
  readonly keys: KeySource;
}

export interface IssuerRegistry {
  /** The issuer whose configured `issuer` equals `iss` exactly (RFC 7519 §4.1.1: case-sensitive). */
  byIssuer(iss: string): Issuer | undefined;
  byId(id: string): Issuer | undefined;
  list(): readonly Issuer[];
  /** Every issuer has keys it can verify with (the admin `/readyz`). */
  ready(): boolean;
  /** First fetch of every remote set not already started; resolves even when fetches fail. */
  start(): Promise<void>;
  /** Releases this registry's references; closes the remote sets no other registry uses. Idempotent. */
  close(): void;
}

export interface IssuerRegistryOptions {
  readonly observer?: KeySourceObserver | undefined;
  /** The registry being replaced by a reload; its unchanged remote sets are shared, not refetched. */
  readonly previous?: IssuerRegistry | undefined;
  readonly env?: NodeJS.ProcessEnv | undefined;
  /** Epoch ms clock for the remote sets (tests). */
  readonly now?: (() => number) | undefined;
}

/** A remote set shared between registries across reloads. */
interface SharedRemote {
  readonly remote: RemoteJwks;
  /** The config parts that determine what is fetched and how; equal parts mean the set can be shared. */
  readonly fetchConfig: unknown;
  refs: number;
  started: boolean;
}

/** Internals of each registry, reachable only from this module (for `previous`). */
const remotesOf = new WeakMap<IssuerRegistry, ReadonlyMap<string, SharedRemote>>();

/**
 * Builds the issuer registry: loads static keys and creates (or shares) remote sets. Call `start()` to fetch.
 *
 * @throws Error when two issuers share an `iss` value, a static key cannot be loaded, or a key URL is not
 *   https (the message names the issuer id).
 * @example
 *   const registry = await createIssuerRegistry(config.issuers, { observer: metrics, previous: old });
 *   await registry.start();
 *   old.close();
 */
export async function createIssuerRegistry(
  issuers: readonly IssuerConfig[],
  opts: IssuerRegistryOptions = {},
): Promise<IssuerRegistry> {
  const previousRemotes = opts.previous === undefined ? undefined : remotesOf.get(opts.previous);
  const byIssuer = new Map<string, Issuer>();
  const byId = new Map<string, Issuer>();
  const remotes = new Map<string, SharedRemote>();
  try {
    for (const config of issuers) {
      if (byIssuer.has(config.issuer)) {
        const other = byIssuer.get(config.issuer)?.config.id;
        throw new Error(`issuer ${config.id}: iss ${config.issuer} is already used by issuer ${other}`);
      }
      const staticKeys = await loadIssuerStaticKeys(config, opts.env);
      const shared = acquireRemote(config, previousRemotes?.get(config.id), opts);
      if (shared !== undefined) remotes.set(config.id, shared);
      const issuer: Issuer = Object.freeze({
        config,
        keys: createKeySource({ staticKeys, remote: shared?.remote }),
      });
      byIssuer.set(config.issuer, issuer);
      byId.set(config.id, issuer);
    }
  } catch (error) {
    releaseAll(remotes);
    throw error;
  }

  const list = Object.freeze([...byId.values()]);
  let closed = false;
  let lastIss: string | undefined;
  let lastIssuer: Issuer | undefined;
  const registry: IssuerRegistry = {
    byIssuer(iss) {
      // Most tokens name the issuer the previous one did; comparing the text is cheaper than hashing it.
      if (iss === lastIss) return lastIssuer;
      const found = byIssuer.get(iss);
      if (found !== undefined) {
        lastIss = iss;
        lastIssuer = found;
      }
      return found;
    },
    byId: (id) => byId.get(id),
    list: () => list,
    ready: () => list.every((issuer) => issuer.keys.status().ready),
    async start() {
      const pending = [...remotes.values()].filter((shared) => !shared.started);
      for (const shared of pending) shared.started = true;
      await Promise.all(pending.map((shared) => shared.remote.start()));
    },
    close() {
      if (closed) return;
      closed = true;
      releaseAll(remotes);
    },
  };
  remotesOf.set(registry, remotes);
  return registry;
}

async function loadIssuerStaticKeys(config: IssuerConfig, env: NodeJS.ProcessEnv | undefined): Promise<LoadedKey[]> {
  const keys: LoadedKey[] = [];
  for (const spec of config.staticKeys) {
    try {
      keys.push(...(await loadStaticKeys(spec, env)));
    } catch (error) {
      throw new Error(`issuer ${config.id}: ${(error as Error).message}`, { cause: error });
    }
  }
  return keys;
}

/** Shares the previous registry's set when what is fetched and how did not change; creates one otherwise. */
function acquireRemote(
  config: IssuerConfig,
  previous: SharedRemote | undefined,
  opts: IssuerRegistryOptions,
): SharedRemote | undefined {
  if (config.jwksUri === undefined && config.discoveryUrl === undefined) return undefined;
  const fetchConfig = {
    issuer: config.issuer,
    jwksUri: config.jwksUri,
    discoveryUrl: config.discoveryUrl,
    policy: config.jwks,
  };
  if (previous !== undefined && previous.refs > 0 && isDeepStrictEqual(previous.fetchConfig, fetchConfig)) {
    previous.refs += 1;
    return previous;
  }
  const remote = createRemoteJwks({
    issuerId: config.id,
    jwksUri: config.jwksUri,
    discoveryUrl: config.jwksUri === undefined ? config.discoveryUrl : undefined,
    expectedIssuer: config.issuer,
    policy: config.jwks,
    observer: opts.observer,
    now: opts.now,
  });
  return { remote, fetchConfig, refs: 1, started: false };
}

function releaseAll(remotes: ReadonlyMap<string, SharedRemote>): void {
  for (const shared of remotes.values()) {
    shared.refs -= 1;
    if (shared.refs === 0) shared.remote.close();
  }
}
