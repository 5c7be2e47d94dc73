/**
 * The one error type of the LogQL library. Every refusal carries a stable `code` so the HTTP layer can map it
 * to a status in one place (`ERR_LOGQL_PARSE` and `ERR_LOGQL_TOO_LARGE` are the client's fault, 400;
 * `ERR_LOGQL_ENFORCE` is a policy or configuration problem and must never result in forwarding the query).
 */

export type LogqlErrorCode = 'ERR_LOGQL_PARSE' | 'ERR_LOGQL_TOO_LARGE' | 'ERR_LOGQL_ENFORCE';

/**
 * A query was refused. `position` is the 0-based UTF-16 offset in the input where the problem was found
 * (0 when the problem is not tied to one place, e.g. an empty allowed-values list); the message repeats it
 * (`unexpected "}" at 17`) so a log line or a 400 body is self-explanatory.
 *
 * @example
 * try { parseLogql('{app="a"') } catch (e) { if (e instanceof LogqlError) console.log(e.code, e.position) }
 */
export class LogqlError extends Error {
  readonly code: LogqlErrorCode;
  readonly position: number;

  constructor(code: LogqlErrorCode, message: string, position: number) {
    super(message);
    this.name = 'LogqlError';
    this.code = code;
    this.position = position;
  }
}

/** Shorthand for the common case: a syntax error at a position, the position appended to the message. */
export function parseError(message: string, position: number): LogqlError {
  return new LogqlError('ERR_LOGQL_PARSE', `${message} at ${position}`, position);
}

export function tooLarge(message: string, position: number): LogqlError {
  return new LogqlError('ERR_LOGQL_TOO_LARGE', `${message} at ${position}`, position);
}

export function enforceError(message: string): LogqlError {
  return new LogqlError('ERR_LOGQL_ENFORCE', message, 0);
}
