// TLS to the upstream: the `tls` section (ca_file, client_cert/client_key, verify), per named
// upstream, SSL_CERT_FILE from astgate's environment, the system bundle by default, the warning when
// verification is off, and TLS session resumption across new upstream connections. The PKI is made
// with Debian's openssl for each run (tls-pki.mjs); every server listens on 127.0.0.1.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Astgate, BIN, ROOT, NEEDS_PROXY, PROXIED, rawRequest, jsonHeaders, tmpDir, toYaml } from './helpers.mjs';
import fs from 'node:fs';
import path from 'node:path';
import { makePKI, TlsUpstream, upstreamBody, CLIENT_CN } from './tls-pki.mjs';

const CA_ENV = ['SSL_CERT_FILE', 'SSL_CERT_DIR'];

// Starts astgate with config (an object, written as astgate.yaml into dir) in front of upstream,
// with env set on top of a process environment that has no SSL_CERT_FILE / SSL_CERT_DIR. Astgate's
// constructor spawns synchronously, so the environment only has to be right for that call.
async function start(dir, upstream, config, env = {}) {
    const file = path.join(dir, `astgate-${Math.random().toString(36).slice(2)}.yaml`);
    fs.writeFileSync(file, toYaml({ logs: { access: 'off', rewrite: 'off' }, ...config }));
    const saved = Object.fromEntries(CA_ENV.map((k) => [k, process.env[k]]));
    for (const k of CA_ENV) delete process.env[k];
    Object.assign(process.env, env);
    let p;
    try {
        p = Astgate.start({ upstream, config: file });
    } finally {
        for (const k of CA_ENV) {
            if (saved[k] === undefined) delete process.env[k];
            else process.env[k] = saved[k];
        }
    }
    const a = await p;
    a.configFile = file;
    return a;
}

async function get(a, p = '/v1/models') {
    return rawRequest(a.origin, { method: 'GET', path: p, headers: jsonHeaders() });
}

function assertOk(res, p = '/v1/models') {
    assert.equal(res.status, 200, `status (body: ${res.body})`);
    assert.equal(res.body.toString(), upstreamBody(p));
}

// 502 with the OpenAI-style error body astgate sends when the upstream exchange failed.
function assertBadGateway(res, code) {
    assert.equal(res.status, 502, `status (body: ${res.body})`);
    const j = JSON.parse(res.body);
    assert.deepEqual(Object.keys(j), ['error']);
    assert.deepEqual(Object.keys(j.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(typeof j.error.message, 'string');
    assert.equal(typeof j.error.type, 'string');
    assert.equal(j.error.param, null);
    if (code) assert.equal(j.error.code, code, `code (message: ${j.error.message})`);
    return j.error;
}

describe('TLS to the upstream', { skip: NEEDS_PROXY }, () => {
    let dir;
    let pki;
    let up; // HTTPS, no client certificate asked
    let mtls; // HTTPS, a client certificate signed by the client CA required
    const procs = [];

    async function run(upstream, config, env) {
        const a = await start(dir, upstream, config, env);
        procs.push(a);
        return a;
    }

    before(async () => {
        if (!PROXIED) return;
        dir = tmpDir();
        pki = makePKI(dir);
        up = await TlsUpstream.start(pki);
        mtls = await TlsUpstream.start(pki, { clientCA: pki.clientCA });
    });

    after(async () => {
        const errors = [];
        for (const a of procs) await a.stop().catch((e) => errors.push(e));
        await up?.close();
        await mtls?.close();
        if (errors.length) throw errors[0];
    });

    it('tls.ca_file = the CA that signed the upstream certificate: 200', async () => {
        const a = await run(up.url, { tls: { ca_file: pki.ca.cert } });
        assertOk(await get(a));
    });

    it('a relative tls.ca_file is read from the config file directory', async () => {
        const a = await run(up.url, { tls: { ca_file: path.basename(pki.ca.cert) } });
        assertOk(await get(a));
    });

    it('no tls section: the system bundle does not trust the test CA: 502 upstream_tls_error', async () => {
        const a = await run(up.url, {});
        const before = up.conns.length;
        assertBadGateway(await get(a), 'upstream_tls_error');
        assert.equal(up.conns.length, before, 'the upstream saw a finished handshake');
    });

    it('a wrong CA file: 502 upstream_tls_error', async () => {
        const a = await run(up.url, { tls: { ca_file: pki.wrongCA.cert } });
        assertBadGateway(await get(a), 'upstream_tls_error');
    });

    it('SSL_CERT_FILE=<the CA> in astgate\'s environment and no tls section: 200', async () => {
        const a = await run(up.url, {}, { SSL_CERT_FILE: pki.ca.cert });
        assertOk(await get(a));
    });

    it('the config wins over SSL_CERT_FILE', async () => {
        const a = await run(up.url, { tls: { ca_file: pki.wrongCA.cert } }, { SSL_CERT_FILE: pki.ca.cert });
        assertBadGateway(await get(a), 'upstream_tls_error');
    });

    it('an upstream that requires a client certificate: client_cert/client_key → 200 and it saw the CN', async () => {
        const a = await run(mtls.url, { tls: { ca_file: pki.ca.cert, client_cert: pki.client.cert, client_key: pki.client.key } });
        const before = mtls.requests.length;
        assertOk(await get(a));
        assert.equal(mtls.requests.length, before + 1);
        assert.equal(mtls.requests.at(-1).conn?.cn, CLIENT_CN);
    });

    // In TLS 1.3 the client's handshake is over before the server judges its certificate: the
    // server's alert reaches curl as a receive error (CURLE_RECV_ERROR) whose text names TLS, and
    // astgate still calls it upstream_tls_error. In TLS 1.2 it is a handshake error.
    it('an upstream that requires a client certificate, none configured: 502 upstream_tls_error (TLS 1.3)', async () => {
        const a = await run(mtls.url, { tls: { ca_file: pki.ca.cert } });
        const before = mtls.requests.length;
        assertBadGateway(await get(a), 'upstream_tls_error');
        assert.equal(mtls.requests.length, before, 'the request reached the upstream');
    });

    it('the same over TLS 1.2: 502 upstream_tls_error', async () => {
        const mtls12 = await TlsUpstream.start(pki, { clientCA: pki.clientCA, maxVersion: 'TLSv1.2' });
        try {
            const a = await run(mtls12.url, { tls: { ca_file: pki.ca.cert } });
            assertBadGateway(await get(a), 'upstream_tls_error');
            assert.equal(mtls12.requests.length, 0, 'the request reached the upstream');
        } finally {
            await mtls12.close();
        }
    });

    it('verify: false → 200 against the untrusted certificate, and a warning on stderr', async () => {
        const a = await run(up.url, { tls: { verify: false } });
        assertOk(await get(a));
        const want = `astgate: warning: TLS verification is off for upstream ${up.url} (tls.verify: false in ${a.configFile})`;
        assert.ok(a.lines.includes(want), `no line ${JSON.stringify(want)} in:\n${a.stderr}`);
    });

    it('with verification on, no warning', async () => {
        const a = await run(up.url, { tls: { ca_file: pki.ca.cert } });
        assertOk(await get(a));
        assert.ok(!/warning: TLS verification/.test(a.stderr), a.stderr);
    });

    it('per-upstream tls: upstreams: {anth: {url, tls: {ca_file}}} for /v1/messages; the rest uses the top level', async () => {
        const a = await run(up.url, {
            tls: { ca_file: pki.wrongCA.cert },
            upstreams: { anth: { url: up.url, tls: { ca_file: pki.ca.cert } } },
            routes: { '/v1/messages': 'anth' },
        });
        const res = await get(a, '/v1/messages/batches');
        assertOk(res, '/v1/messages/batches');
        assertBadGateway(await get(a), 'upstream_tls_error');
    });

    it('a named upstream inherits the top-level tls key by key (verify: false there warns for it)', async () => {
        const a = await run(up.url, {
            tls: { ca_file: pki.ca.cert, client_cert: pki.client.cert, client_key: pki.client.key },
            upstreams: { mt: mtls.url, lax: { url: up.url, tls: { verify: false, ca_file: pki.wrongCA.cert } } },
            routes: { '/v1/messages': 'mt', '/v1/embeddings': 'lax' },
        });
        const m = await get(a, '/v1/messages/x');
        assertOk(m, '/v1/messages/x');
        assert.equal(mtls.requests.at(-1).conn?.cn, CLIENT_CN);
        assertOk(await get(a, '/v1/embeddings'), '/v1/embeddings');
        const want = `astgate: warning: TLS verification is off for upstream ${up.url} (upstreams.lax.tls.verify: false in ${a.configFile})`;
        assert.ok(a.lines.includes(want), `no line ${JSON.stringify(want)} in:\n${a.stderr}`);
        assert.equal(a.lines.filter((l) => l.includes('warning: TLS verification')).length, 1, a.stderr);
    });

    // Node's TLS 1.3 server sends session tickets after a full handshake only, and a TLS 1.3
    // session is used once on the client side (curl 7.88 with OpenSSL), so against node every other
    // connection is resumed; nginx and `openssl s_server` send a ticket on each resumption and
    // every connection resumes. Two requests in a row: the second is resumed.
    it('TLS 1.3: after Connection: close, the next connection resumes the session', async () => {
        const a = await run(up.url, { tls: { ca_file: pki.ca.cert }, workers: 1 });
        const first = up.conns.length;
        for (let i = 0; i < 2; i++) assertOk(await get(a));
        const conns = up.conns.slice(first);
        assert.equal(conns.length, 2, 'one connection per request (the upstream closes each)');
        assert.deepEqual(
            conns.map((c) => [c.protocol, c.reused]),
            [
                ['TLSv1.3', false],
                ['TLSv1.3', true],
            ],
            'isSessionReused() per connection on the upstream side',
        );
    });

    // Two requests at once take two easy handles from the pool: the one that went first and a
    // new one, which can only resume through the worker's share handle. TLS 1.2 with a session
    // cache on the server, which takes a session as often as it is offered.
    it('TLS 1.2: sessions are shared across easy handles (one request, then two at once)', async () => {
        const up12 = await TlsUpstream.start(pki, { maxVersion: 'TLSv1.2', sessionCache: true });
        try {
            const a = await run(up12.url, { tls: { ca_file: pki.ca.cert }, workers: 1 });
            assertOk(await get(a));
            up12.hold = 2;
            const [x, y] = await Promise.all([get(a, '/v1/models/x'), get(a, '/v1/models/y')]);
            assertOk(x, '/v1/models/x');
            assertOk(y, '/v1/models/y');
            assert.deepEqual(
                up12.conns.map((c) => [c.protocol, c.reused]),
                [
                    ['TLSv1.2', false],
                    ['TLSv1.2', true],
                    ['TLSv1.2', true],
                ],
                'isSessionReused() per connection on the upstream side',
            );
        } finally {
            await up12.close();
        }
    });

    it('a bad tls section is refused at start with file:line:col', async () => {
        const file = path.join(dir, 'bad.yaml');
        fs.writeFileSync(file, `tls:\n  ca_file: ${path.join(dir, 'missing.pem')}\n`);
        const r = spawnSync(BIN, ['serve', '--check', '--config', file], { cwd: ROOT, encoding: 'utf8', timeout: 20000 });
        assert.notEqual(r.status, 0, r.stderr);
        const want = `${file}:2:12: \`tls.ca_file\`: cannot read ${path.join(dir, 'missing.pem')}: No such file or directory`;
        assert.ok(r.stderr.includes(want), `no ${JSON.stringify(want)} in:\n${r.stderr}`);
    });
});
