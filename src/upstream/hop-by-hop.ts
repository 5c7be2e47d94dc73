/**
 * Hop-by-hop header fields (RFC 9110 §7.6.1): they describe one connection, not the message, so a proxy
 * must not forward them. That is the fixed list below plus every field named in `Connection`.
 *
 * `keep-alive`, `proxy-connection`, `transfer-encoding`, `te`, `trailer`, `upgrade` and the proxy
 * authentication pair are listed by RFC 9110 §7.6.1 / RFC 9112 §9.6 or by the RFC 2616 §13.5.1 list that
 * proxies in the wild (nginx, Envoy, Go's httputil) still honour; `proxy-connection` is the
 * non-standard pre-RFC 7230 spelling browsers still send (RFC 9112 §9.6 notes it).
 *
 * Both functions sit on the hot path (every header of every request and response goes through
 * `isHopByHop`), so they avoid allocation: names are compared case-insensitively in place instead of
 * being lower-cased into new strings.
 */

/**
 * True when `name` is a hop-by-hop header field name (any case). Names listed in `Connection` are not
 * covered: combine with {@link connectionTokens}.
 *
 * @example
 * isHopByHop('Transfer-Encoding'); // true
 * isHopByHop('set-cookie');        // false
 */
export function isHopByHop(name: string): boolean {
  // Dispatch on length first: nearly every ordinary header is rejected by one integer compare.
  switch (name.length) {
    case 2:
      return equalsLower(name, 'te');
    case 7:
      return equalsLower(name, 'trailer') || equalsLower(name, 'upgrade');
    case 10:
      return equalsLower(name, 'connection') || equalsLower(name, 'keep-alive');
    case 16:
      return equalsLower(name, 'proxy-connection');
    case 17:
      return equalsLower(name, 'transfer-encoding');
    case 18:
      return equalsLower(name, 'proxy-authenticate');
    case 19:
      return equalsLower(name, 'proxy-authorization');
    default:
      return false;
  }
}

/**
 * The lower-cased field names listed in a `Connection` header value (RFC 9110 §7.6.1: "a proxy or gateway
 * MUST parse a received Connection header field before a message is forwarded and, for each
 * connection-option in this field, remove any header or trailer field(s) from the message with the same
 * name"). Accepts the value as Node and undici present it (string, list for repeated fields, or absent).
 * The options `close` and `keep-alive` come back too; they name no end-to-end field, so dropping them is
 * harmless.
 *
 * @example
 * connectionTokens('keep-alive, X-Trace'); // Set { 'keep-alive', 'x-trace' }
 */
export function connectionTokens(value: string | string[] | undefined): Set<string> {
  const tokens = new Set<string>();
  if (value === undefined) return tokens;
  if (typeof value === 'string') addTokens(value, tokens);
  else for (const item of value) addTokens(item, tokens);
  return tokens;
}


/**
 * The names `Connection` asks a proxy to drop, or undefined when it asks for nothing beyond the hop-by-hop
 * fields (absent, or just `keep-alive` / `close`: what almost every peer sends), so that the common case
 * skips the parse. Combine with {@link isHopByHop}.
 *
 * @example
 * droppedByConnection('keep-alive');           // undefined
 * droppedByConnection('keep-alive, X-Trace');  // Set { 'keep-alive', 'x-trace' }
 */
export function droppedByConnection(value: string | string[] | undefined): ReadonlySet<string> | undefined {
  if (value === undefined || value === 'keep-alive' || value === 'close') return undefined;
  return connectionTokens(value);
}

function addTokens(value: string, into: Set<string>): void {
  // RFC 9110 §5.6.1: a list, with optional whitespace around commas and empty elements allowed.
  let start = 0;
  while (start <= value.length) {
    let end = value.indexOf(',', start);
    if (end === -1) end = value.length;
    const token = value.slice(start, end).trim();
    if (token !== '') into.add(token.toLowerCase());
    start = end + 1;
  }
}

/**
 * `name === lower` ignoring ASCII case, without allocating. `lower` is a lower-case literal made of
 * letters and '-'. OR-ing 0x20 folds 'A'-'Z' onto 'a'-'z'; the only other byte that could fold onto one
 * of those characters is a control character, which is not a valid token character (RFC 9110 §5.6.2) and
 * never reaches us from Node's or undici's parser.
 */
function equalsLower(name: string, lower: string): boolean {
  if (name === lower) return true;
  for (let i = 0; i < lower.length; i++) {
    if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}
