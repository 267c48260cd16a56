/**
 * The floor of Node's own I/O for a proxy: every client connection gets one upstream connection
 * and bytes are copied both ways with node:net, with no HTTP parsing, routing, filters or stats.
 * Whatever meshext costs beyond this per request is meshext's; what this costs is Node's (the
 * event loop, the stream layer, the socket syscalls). A bench contender, never used by meshext.
 *
 * Usage: node bench/lib/node-forwarder.ts <listen port> <upstream port>
 */
import net from 'node:net';

const [listenPort, upstreamPort] = process.argv.slice(2).map(Number);
if (!listenPort || !upstreamPort) {
  console.error('usage: node-forwarder.ts <listen port> <upstream port>');
  process.exit(2);
}

net
  .createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: upstreamPort, noDelay: true });
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => {});
    upstream.on('error', () => {});
  })
  .listen(listenPort, '127.0.0.1', () => console.log(`forwarding 127.0.0.1:${listenPort} -> 127.0.0.1:${upstreamPort}`));

process.on('SIGTERM', () => process.exit(0));
