/**
 * The process logger (pino, JSON lines). Redaction is a second line of defence: the access log is built from
 * an allowlist of fields and never receives a token, but should a header object ever be logged by mistake
 * its credentials are censored.
 */
import { pino } from 'pino';
import type { Logger, DestinationStream } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'portcullis', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['*.authorization', '*.cookie', '*["set-cookie"]', 'headers.authorization', 'headers.cookie', 'token'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ sync: false }),
  );
}
