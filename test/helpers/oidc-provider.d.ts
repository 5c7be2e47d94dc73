/**
 * oidc-provider 9 ships no type declarations. This covers only what `test/helpers/idp.ts` uses, typed
 * narrowly (no `any`), so a misuse of the test IdP's configuration is a type error. Callbacks receive the
 * provider's Koa context, which the helper never inspects; it is `unknown` on purpose.
 */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export type AdapterPayload = Record<string, unknown>;

  /** The storage interface of oidc-provider models (Client, ClientCredentials, Session, ...). */
  export interface Adapter {
    upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void>;
    find(id: string): Promise<AdapterPayload | undefined>;
    findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
    findByUid(uid: string): Promise<AdapterPayload | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }

  export interface ClientMetadata {
    client_id: string;
    client_secret?: string;
    grant_types?: string[];
    response_types?: string[];
    redirect_uris?: string[];
    token_endpoint_auth_method?: string;
    scope?: string;
  }

  export interface ResourceServerInfo {
    /** Space-separated scopes this resource accepts; requested scopes outside it are dropped. */
    scope: string;
    audience?: string;
    accessTokenTTL?: number;
    accessTokenFormat?: 'opaque' | 'jwt';
    jwt?: { sign?: { alg?: string; kid?: string } };
  }

  /** The token model as seen by the JWT customizer (only the fields the helper reads). */
  export interface IssuedToken {
    readonly clientId?: string;
    readonly kind?: string;
  }

  export interface StructuredJwt {
    header?: Record<string, unknown>;
    payload: Record<string, unknown>;
  }

  export interface Configuration {
    adapter?: (model: string) => Adapter;
    clients?: ClientMetadata[];
    jwks?: { keys: Array<Record<string, unknown>> };
    scopes?: string[];
    clientBasedCORS?: (ctx: unknown, origin: string, client: unknown) => boolean;
    ttl?: Record<string, number>;
    cookies?: { keys?: string[] };
    features?: {
      devInteractions?: { enabled: boolean };
      clientCredentials?: { enabled: boolean };
      introspection?: { enabled: boolean };
      revocation?: { enabled: boolean };
      resourceIndicators?: {
        enabled: boolean;
        defaultResource?: (ctx: unknown, client: unknown, oneOf?: string | string[]) => Promise<string | string[] | undefined>;
        getResourceServerInfo?: (ctx: unknown, resourceIndicator: string, client: unknown) => Promise<ResourceServerInfo>;
        useGrantedResource?: (ctx: unknown, model: unknown) => Promise<boolean>;
      };
    };
    formats?: {
      customizers?: {
        jwt?: (ctx: unknown, token: IssuedToken, jwt: StructuredJwt) => Promise<void> | void;
      };
    };
  }

  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    /** A node:http request listener. */
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    /** Absolute URL of a named route (`token`, `jwks`, `discovery`, ...). */
    urlFor(name: string, opt?: Record<string, unknown>): string;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }
}
