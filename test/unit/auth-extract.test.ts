/**
 * extractToken against real requests: a node:http server on 127.0.0.1 runs it on what arrives, and the
 * requests are written byte for byte over a socket so repeated headers reach the server exactly as sent.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { TokenLocation } from '../../src/config/types.ts';
import { extractToken } from '../../src/auth/extract.ts';
import { isProxyError } from '../../src/errors.ts';

const BEARER: TokenLocation = { kind: 'header', name: 'authorization', prefix: 'Bearer ' };
const CUSTOM: TokenLocation = { kind: 'header', name: 'x-api-token', prefix: '' };
const COOKIE: TokenLocation = { kind: 'cookie', name: 'jwt' };
const QUERY: TokenLocation = { kind: 'query', name: 'access_token' };
const ALL = [BEARER, COOKIE, QUERY];
const MAX = 64;

interface Case {
  readonly name: string;
  readonly path?: string;
  readonly headers?: readonly string[];
  readonly from?: readonly TokenLocation[];
  /** A token, a `kind:name` location, `undefined` for no token, or an error code. */
  readonly want: { token: string; from: string } | { code: string } | undefined;
}

const found = (token: string, from: string) => ({ token, from });

const CASES: Case[] = [
  { name: 'no token anywhere', want: undefined },
  { name: 'bearer header', headers: ['Authorization: Bearer abc.def.ghi'], want: found('abc.def.ghi', 'header:authorization') },
  { name: 'scheme is case-insensitive (RFC 6750 §2.1)', headers: ['authorization: bEaReR abc'], want: found('abc', 'header:authorization') },
  { name: 'several spaces after the scheme (1*SP)', headers: ['Authorization: Bearer   abc'], want: found('abc', 'header:authorization') },
  { name: 'Basic scheme is not a token', headers: ['Authorization: Basic dXNlcjpwYXNz'], want: undefined },
  { name: 'a scheme that merely starts with Bearer is another scheme', headers: ['Authorization: Bearerish abc'], want: undefined },
  { name: 'Bearer with nothing after it', headers: ['Authorization: Bearer'], want: { code: 'ERR_TOKEN_MALFORMED' } },
  { name: 'Bearer followed by spaces only', headers: ['Authorization: Bearer    '], want: { code: 'ERR_TOKEN_MALFORMED' } },
  { name: 'whitespace inside the token', headers: ['Authorization: Bearer abc def'], want: { code: 'ERR_TOKEN_MALFORMED' } },
  { name: 'two credentials in one header', headers: ['Authorization: Bearer a, Bearer b'], want: { code: 'ERR_TOKEN_MALFORMED' } },
  { name: 'tab after the scheme', headers: ['Authorization: Bearer\tabc'], want: { code: 'ERR_TOKEN_MALFORMED' } },
  { name: 'authorization repeated (Node keeps only one in req.headers)', headers: ['Authorization: Bearer a', 'Authorization: Bearer b'], want: { code: 'ERR_TOKEN_AMBIGUOUS' } },
  { name: 'authorization repeated with the same token', headers: ['Authorization: Bearer a', 'authorization: Bearer a'], want: { code: 'ERR_TOKEN_AMBIGUOUS' } },
  { name: 'Basic next to Bearer is ambiguous', headers: ['Authorization: Basic eA==', 'Authorization: Bearer a'], want: { code: 'ERR_TOKEN_AMBIGUOUS' } },
  { name: 'two Basic headers carry no token', headers: ['Authorization: Basic eA==', 'Authorization: Basic eQ=='], want: undefined },
  { name: 'header and query', path: '/x?access_token=b', headers: ['Authorization: Bearer a'], want: { code: 'ERR_TOKEN_AMBIGUOUS' } },
  { name: 'header and cookie', headers: ['Authorization: Bearer a', 'Cookie: jwt=b'], want: { code: 'ERR_TOKEN_AMBIGUOUS' } },
  { name: 'query alone', path: '/x?a=1&access_token=q.r.s', want: found('q.r.s', 'query:access_token') },
  { name: 'query given twice', path: '/x?access_token=a&access_token=a', want: { code: 'ERR_TOKEN_AMBIGUOUS' } },
  { name: 'empty query value', path: '/x?access_token=', want: { code: 'ERR_TOKEN_MALFORMED' } },
  { name: 'cookie among others', headers: ['Cookie: theme=dark; jwt=c.d.e; lang=en'], want: found('c.d.e', 'cookie:jwt') },
  { name: 'quoted cookie value (RFC 6265 §4.1.1)', headers: ['Cookie: jwt="c.d.e"'], want: found('c.d.e', 'cookie:jwt') },
  { name: 'cookie name is exact', headers: ['Cookie: xjwt=a; JWT=b'], want: undefined },
  { name: 'empty cookie counts as absent', headers: ['Cookie: jwt='], want: undefined },
  { name: 'cookie twice in one header', headers: ['Cookie: jwt=a; jwt=b'], want: { code: 'ERR_TOKEN_AMBIGUOUS' } },
  { name: 'cookie twice across two Cookie fields', headers: ['Cookie: jwt=a', 'Cookie: jwt=b'], want: { code: 'ERR_TOKEN_AMBIGUOUS' } },
  { name: 'locations not configured are ignored', path: '/x?access_token=q', headers: ['Cookie: jwt=c'], from: [BEARER], want: undefined },
  { name: 'a location listed twice counts once', headers: ['Authorization: Bearer a'], from: [BEARER, BEARER], want: found('a', 'header:authorization') },
  { name: 'raw header value with an empty prefix', headers: ['X-Api-Token: raw.tok.en'], from: [CUSTOM], want: found('raw.tok.en', 'header:x-api-token') },
  { name: 'custom prefix', headers: ['X-Api-Token: Token t'], from: [{ kind: 'header', name: 'x-api-token', prefix: 'Token ' }], want: found('t', 'header:x-api-token') },
  { name: 'exactly at the size limit', headers: [`Authorization: Bearer ${'a'.repeat(MAX)}`], want: found('a'.repeat(MAX), 'header:authorization') },
  { name: 'one byte over the size limit', headers: [`Authorization: Bearer ${'a'.repeat(MAX + 1)}`], want: { code: 'ERR_TOKEN_TOO_LARGE' } },
  { name: 'query over the size limit', path: `/x?access_token=${'a'.repeat(MAX + 1)}`, want: { code: 'ERR_TOKEN_TOO_LARGE' } },
  // The limit is in UTF-8 bytes: 32 × é is 32 characters but 64 bytes, 33 × é is 66.
  { name: 'multi-byte token exactly at the byte limit', path: `/x?access_token=${'%C3%A9'.repeat(MAX / 2)}`, want: found('é'.repeat(MAX / 2), 'query:access_token') },
  { name: 'multi-byte token over the byte limit with fewer characters than the limit', path: `/x?access_token=${'%C3%A9'.repeat(MAX / 2 + 1)}`, want: { code: 'ERR_TOKEN_TOO_LARGE' } },
  { name: 'header name in any case', headers: ['AUTHORIZATION: Bearer a'], want: found('a', 'header:authorization') },
  { name: 'header name in mixed case, repeated', headers: ['aUtHoRiZaTiOn: Bearer a', 'Authorization: Bearer a'], want: { code: 'ERR_TOKEN_AMBIGUOUS' } },
  { name: 'a name of the same length is another header', headers: ['Authorizatioo: Bearer a'], want: undefined },
];

let server: Server;
let port: number;

before(async () => {
  server = createServer((req, res) => {
    const c = CASES[Number(req.headers['x-case'])]!;
    const query = new URL(req.url ?? '/', 'http://localhost').search.slice(1);
    let result: unknown;
    try {
      const got = extractToken(req, query, c.from ?? ALL, MAX);
      result = got === undefined ? null : { token: got.token, from: `${got.from.kind}:${got.from.name}` };
    } catch (error) {
      result = { code: isProxyError(error) ? error.code : String(error) };
    }
    res.end(JSON.stringify(result));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** Sends one request with these exact header lines and returns the JSON the server answered. */
function send(index: number, c: Case): Promise<unknown> {
  const head = [`GET ${c.path ?? '/x'} HTTP/1.1`, 'Host: 127.0.0.1', `X-Case: ${index}`, 'Connection: close', ...(c.headers ?? [])];
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.end(head.join('\r\n') + '\r\n\r\n'));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString();
      const body = text.slice(text.indexOf('\r\n\r\n') + 4);
      try {
        resolve(JSON.parse(body));
      } catch {
        reject(new Error(`unexpected answer: ${text}`));
      }
    });
  });
}

for (const [index, c] of CASES.entries()) {
  test(`extractToken: ${c.name}`, async () => {
    assert.deepEqual(await send(index, c), c.want ?? null);
  });
}
