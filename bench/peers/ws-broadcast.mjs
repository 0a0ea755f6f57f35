// Node `ws` peer for herald's WebSocket benchmark (bench/run-ws.sh): the broadcast server a
// user would write with the `ws` package, in one process.
//
//   node bench/peers/ws-broadcast.mjs [--port 18090] [--host 127.0.0.1]
//   ... subscribe: GET  ws://127.0.0.1:18090/sub/{topic}     (WebSocket)
//   ... publish:   POST http://127.0.0.1:18090/pub/{topic}    body = the message
//                  -> 204 once the body has been handed to every open subscriber of the topic
//
// Prints "ws-broadcast listening on http://HOST:PORT" once ready. No history, no persistence:
// a message reaches the subscribers connected when it is published. permessage-deflate is
// off (the `ws` server default). The `ws` package comes from the repository's node_modules.
import http from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const host = arg('--host', '127.0.0.1');
const port = Number(arg('--port', '18090'));

const TOPIC = /^\/(sub|pub)\/([A-Za-z0-9_.:@-]+)$/;
const topics = new Map(); // topic -> Set of WebSocket

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });

const server = http.createServer((req, res) => {
  const m = TOPIC.exec(req.url);
  if (!m || m[1] !== 'pub' || req.method !== 'POST') {
    res.writeHead(m ? 405 : 404).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const data = Buffer.concat(chunks);
    const subs = topics.get(m[2]);
    if (subs) {
      for (const ws of subs) {
        if (ws.readyState === WebSocket.OPEN) ws.send(data, { binary: false });
      }
    }
    res.writeHead(204).end();
  });
});

server.on('upgrade', (req, socket, head) => {
  const m = TOPIC.exec(req.url);
  if (!m || m[1] !== 'sub') {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    let subs = topics.get(m[2]);
    if (!subs) topics.set(m[2], (subs = new Set()));
    subs.add(ws);
    ws.on('close', () => {
      subs.delete(ws);
      if (subs.size === 0 && topics.get(m[2]) === subs) topics.delete(m[2]);
    });
    ws.on('error', () => {});
  });
});

// Publishers keep their connection for the whole run (as with nginx's keepalive_timeout 75s).
server.keepAliveTimeout = 75_000;
server.headersTimeout = 80_000;
server.listen(port, host, 8192, () => {
  const a = server.address();
  console.log(`ws-broadcast listening on http://${a.address}:${a.port}`);
});

const stop = () => {
  for (const ws of wss.clients) ws.terminate();
  for (const subs of topics.values()) for (const ws of subs) ws.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
