// Throwaway PKI and HTTPS upstreams for tls.test.mjs: a CA with a server certificate for 127.0.0.1,
// a second (wrong) CA, and a client CA with a client certificate, made with Debian's `openssl` in a
// temp dir; an HTTPS upstream on 127.0.0.1:0 that answers small JSON, closes every connection
// (`Connection: close`, so each request is a new TLS handshake) and records, per connection,
// whether the handshake resumed a session and which client certificate it saw.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';

function openssl(dir, args) {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

// A self-signed CA: {key, cert} (file paths).
function makeCA(dir, name) {
    const key = path.join(dir, `${name}.key`);
    const cert = path.join(dir, `${name}.crt`);
    // prettier-ignore
    openssl(dir, [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=astgate e2e ${name}`,
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return { key, cert };
}

// A leaf certificate signed by ca: {key, cert}. ext: extension lines (subjectAltName, ...).
function makeLeaf(dir, name, cn, ca, ext) {
    const key = path.join(dir, `${name}.key`);
    const csr = path.join(dir, `${name}.csr`);
    const cert = path.join(dir, `${name}.crt`);
    const extFile = path.join(dir, `${name}.ext`);
    fs.writeFileSync(extFile, ['basicConstraints=CA:FALSE', ...ext].join('\n') + '\n');
    // prettier-ignore
    openssl(dir, [
        'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`,
    ]);
    // prettier-ignore
    openssl(dir, [
        'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial',
        String(Date.now()), '-days', '2', '-out', cert, '-extfile', extFile,
    ]);
    return { key, cert };
}

export const CLIENT_CN = 'astgate-e2e-client';

// Every file the TLS tests need, in dir: {ca, server, wrongCA, clientCA, client}; each {key, cert}.
export function makePKI(dir) {
    const ca = makeCA(dir, 'ca');
    const server = makeLeaf(dir, 'server', '127.0.0.1', ca, ['subjectAltName=IP:127.0.0.1', 'extendedKeyUsage=serverAuth']);
    const wrongCA = makeCA(dir, 'wrong-ca');
    const clientCA = makeCA(dir, 'client-ca');
    const client = makeLeaf(dir, 'client', CLIENT_CN, clientCA, ['extendedKeyUsage=clientAuth']);
    return { ca, server, wrongCA, clientCA, client };
}

// The JSON every upstream answers (any method, any path), with the path it was asked for.
export function upstreamBody(p) {
    return JSON.stringify({ object: 'e2e.tls', path: p });
}

// An HTTPS upstream on 127.0.0.1:0. Options:
//   clientCA: require a client certificate signed by it;
//   maxVersion: e.g. 'TLSv1.2';
//   sessionCache: keep sessions by ID on the server ('newSession' / 'resumeSession'), which node
//     leaves to the application: without it a TLS 1.2 handshake is never resumed;
//   hold: answer only once that many requests are waiting (to make requests overlap).
// conns: one record per TLS connection, in order: {reused, protocol, cn, requests}.
export class TlsUpstream {
    static async start(pki, opts = {}) {
        const u = new TlsUpstream(pki, opts);
        await new Promise((resolve, reject) => {
            u.server.once('error', reject);
            u.server.listen(0, '127.0.0.1', resolve);
        });
        u.url = `https://127.0.0.1:${u.server.address().port}`;
        return u;
    }

    constructor(pki, { clientCA = null, maxVersion = null, sessionCache = false, hold = 0 } = {}) {
        this.conns = [];
        this.requests = [];
        this.hold = hold;
        this.waiting = [];
        const opts = { key: fs.readFileSync(pki.server.key), cert: fs.readFileSync(pki.server.cert) };
        if (clientCA) Object.assign(opts, { ca: fs.readFileSync(clientCA.cert), requestCert: true, rejectUnauthorized: true });
        if (maxVersion) opts.maxVersion = maxVersion;
        this.server = https.createServer(opts, (req, res) => {
            const conn = this.conns.find((c) => c.socket === req.socket);
            const parts = [];
            req.on('data', (d) => parts.push(d));
            req.on('end', () => {
                this.requests.push({ method: req.method, path: req.url, body: Buffer.concat(parts), conn });
                if (conn) conn.requests++;
                const answer = () => {
                    const body = upstreamBody(req.url);
                    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), connection: 'close' });
                    res.end(body);
                };
                this.waiting.push(answer);
                if (this.waiting.length >= this.hold) for (const f of this.waiting.splice(0)) f();
            });
        });
        if (sessionCache) {
            const sessions = new Map();
            this.server.on('newSession', (id, data, done) => {
                sessions.set(id.toString('hex'), data);
                done();
            });
            this.server.on('resumeSession', (id, done) => done(null, sessions.get(id.toString('hex')) ?? null));
        }
        this.server.on('secureConnection', (socket) => {
            const peer = socket.getPeerCertificate();
            this.conns.push({ socket, reused: socket.isSessionReused(), protocol: socket.getProtocol(), cn: peer?.subject?.CN ?? null, requests: 0 });
        });
    }

    async close() {
        this.server.closeAllConnections?.();
        await new Promise((resolve) => this.server.close(resolve));
    }
}
