/**
 * Real upstream servers for integration tests, all on 127.0.0.1 port 0.
 *
 * - `startRecordingUpstream()` records every request (and WebSocket upgrade) it receives and answers
 *   200 JSON echoing what it saw, or runs a custom handler; WebSocket upgrades are accepted and echoed.
 * - `startResettingServer()`, `startSilentServer()`, `closedPort()` model upstream failures.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';

export interface RecordedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  /** Lower-case names, as Node parses them. */
  headers: Record<string, string | string[] | undefined>;
  /** Names in received case, name/value alternating, repeats kept. */
  rawHeaders: string[];
  /** The complete body; empty until the request ended (and always for upgrades). */
  body: Buffer;
}

export type RecordingHandler = (req: IncomingMessage, res: ServerResponse, recorded: RecordedRequest) => void;

export interface RecordingUpstreamOptions {
  /**
   * Answers instead of the default. Called as soon as the request head arrives (the body may still be
   * streaming: `recorded.body` is filled at 'end'), so a handler can observe streaming.
   */
  handler?: RecordingHandler;
  /** Accept WebSocket upgrades (default true). When false, upgrade requests reach `handler`. */
  websocket?: boolean;
  /** Called for each accepted WebSocket after the default echo listener is installed. */
  onWebSocket?: (socket: WebSocket, req: IncomingMessage) => void;
}

export interface RecordingUpstream {
  origin: string;
  port: number;
  /** In arrival order; a request is added when its head arrives. */
  requests: RecordedRequest[];
  close(): Promise<void>;
  /** Forgets the recorded requests. */
  reset(): void;
}

/**
 * Starts a recording upstream. Default answer: 200 `{ ok: true, method, url, headers }` once the body
 * ended.
 */
export async function startRecordingUpstream(
  opts: RecordingUpstreamOptions = {},
): Promise<RecordingUpstream> {
  const requests: RecordedRequest[] = [];
  const handler = opts.handler ?? answerEcho;
  const upgraded = new Set<Duplex>();

  const server = createServer((req, res) => {
    const recorded = record(req);
    requests.push(recorded);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      recorded.body = Buffer.concat(chunks);
    });
    handler(req, res, recorded);
  });

  if (opts.websocket !== false) {
    const wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      requests.push(record(req));
      upgraded.add(socket);
      socket.on('close', () => upgraded.delete(socket));
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
        opts.onWebSocket?.(ws, req);
      });
    });
  }

  const port = await listen(server);
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    requests,
    reset() {
      requests.length = 0;
    },
    async close() {
      for (const socket of upgraded) socket.destroy();
      server.closeAllConnections();
      await closeServer(server);
    },
  };
}

/** The default answer: what the upstream saw, as JSON, once the request body ended. */
function answerEcho(req: IncomingMessage, res: ServerResponse): void {
  req.on('end', () => {
    const body = JSON.stringify({ ok: true, method: req.method, url: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

function record(req: IncomingMessage): RecordedRequest {
  return {
    method: req.method ?? '',
    url: req.url ?? '',
    headers: { ...req.headers },
    rawHeaders: [...req.rawHeaders],
    body: Buffer.alloc(0),
  };
}

export interface RawServer {
  origin: string;
  port: number;
  close(): Promise<void>;
}

/** Accepts connections and resets each one as soon as the request bytes arrive (RST, not FIN). */
export async function startResettingServer(): Promise<RawServer> {
  return startRawServer((socket) => {
    socket.once('data', () => socket.resetAndDestroy());
  });
}

/** Accepts connections and never answers (for timeouts). */
export async function startSilentServer(): Promise<RawServer> {
  return startRawServer((socket) => {
    // Read and discard so the client's writes complete; answer nothing.
    socket.resume();
  });
}

/** A loopback port with nothing listening: bound once to learn a free number, then released. */
export async function closedPort(): Promise<number> {
  const server = createNetServer();
  const port = await listen(server);
  await closeServer(server);
  return port;
}

async function startRawServer(onConnection: (socket: Socket) => void): Promise<RawServer> {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    onConnection(socket);
  });
  const port = await listen(server);
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    async close() {
      for (const socket of sockets) socket.destroy();
      await closeServer(server);
    },
  };
}

async function listen(server: Server | NetServer): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

async function closeServer(server: Server | NetServer): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
  });
}
