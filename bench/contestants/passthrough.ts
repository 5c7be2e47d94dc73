/**
 * Contestant "node pass-through": node:http + undici Pool, no authentication at all. Every ratio in the
 * bench table is relative to this row: it is the cost of being a Node proxy before any JWT work.
 *
 *   node bench/contestants/passthrough.ts --port 18101 --backend http://127.0.0.1:18080
 */
import { createServer } from 'node:http';
import { createForwarder, forwardHeaders } from './forward.ts';
import { exitOnSignals, readOptions } from './shared.ts';

const options = readOptions();
const forwarder = createForwarder(options.backend);

const server = createServer((req, res) => {
  forwarder.forward(req, res, forwardHeaders(req.headers));
});
server.keepAliveTimeout = 30_000;
server.listen(options.port, '127.0.0.1');
exitOnSignals(() => server.close());
