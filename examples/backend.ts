/**
 * The quickstart's example backend: answers every request with what it received, so a user can see which
 * headers the proxy forwarded (identity headers from claims, X-Forwarded-*, no Authorization).
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';

export async function startExampleBackend(port = 0, host = '127.0.0.1'): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const body = JSON.stringify(
      { backend: 'example', method: req.method, url: req.url, headers: req.headers },
      null,
      2,
    );
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body + '\n');
  });
  server.listen(port, host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  return { server, origin: `http://${host}:${address.port}` };
}
