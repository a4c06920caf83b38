// The image test's upstream: an HTTPS server on 127.0.0.1 (a port of its own) that answers every
// request with a small JSON body, and, when it may bind port 53 on DNS_ADDR, a DNS server that
// answers every A question with 127.0.0.1. Lets astgate, run from the image's file system, show
// that it resolves names (files and dns) and verifies TLS with the image's CA bundle.
//
//   node fake-upstream.mjs KEY.pem CERT.pem [DNS_ADDR]
//
// Prints one line when ready: `ready PORT dns` or `ready PORT nodns REASON`. Runs until it is
// killed, and 120 s at most.

import dgram from 'node:dgram';
import fs from 'node:fs';
import https from 'node:https';

const [key, cert, dnsAddr] = process.argv.slice(2);
const BODY = JSON.stringify({ object: 'list', data: [{ id: 'from-the-fake-upstream' }] });

const server = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
    req.resume();
    req.on('end', () => {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(BODY) });
        res.end(BODY);
    });
});

// one question in, the same question and (for A) one answer out: 127.0.0.1, TTL 5 s
function dnsAnswer(msg) {
    let i = 12;
    while (i < msg.length && msg[i] !== 0) i += msg[i] + 1;
    const qend = i + 5;
    if (msg.length < qend) return null;
    const qtype = msg.readUInt16BE(i + 1);
    const head = Buffer.alloc(12);
    msg.copy(head, 0, 0, 2); // id
    head.writeUInt16BE(0x8180, 2); // response, recursion desired and available, no error
    head.writeUInt16BE(1, 4);
    head.writeUInt16BE(qtype === 1 ? 1 : 0, 6);
    const answer = qtype === 1 ? Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 127, 0, 0, 1]) : Buffer.alloc(0);
    return Buffer.concat([head, msg.subarray(12, qend), answer]);
}

function startDns() {
    return new Promise((resolve) => {
        if (!dnsAddr) return resolve('no address given');
        const sock = dgram.createSocket('udp4');
        sock.on('error', (e) => resolve(`cannot bind ${dnsAddr}:53 (${e.code})`));
        sock.on('message', (msg, from) => {
            const a = dnsAnswer(msg);
            if (a) sock.send(a, from.port, from.address);
        });
        sock.bind(53, dnsAddr, () => resolve(null));
    });
}

server.listen(0, '127.0.0.1', async () => {
    const why = await startDns();
    console.log(`ready ${server.address().port} ${why ? `nodns ${why}` : 'dns'}`);
});
setTimeout(() => process.exit(0), 120000);
