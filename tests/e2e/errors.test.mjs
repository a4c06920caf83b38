// Errors and limits, with raw requests: upstream unreachable → 502, upstream timeout → 504 (both
// with an OpenAI-style error body), request body over limits.max_request_body → 413. Each
// describe starts its own astgate (a closed upstream port; a config with short limits).

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import net from 'node:net';
import OpenAI from 'openai';
import {
    NEEDS_PROXY,
    ROOT,
    RULES,
    openTarget,
    rawRequest,
    jsonHeaders,
    chatBody,
    closedPort,
    writeConfig,
    withTimeout,
    assertNoSecrets,
    cliRewriteText,
} from './helpers.mjs';

const MESSAGES = [{ role: 'user', content: 'hi' }];
const UPSTREAM_MS = 300;
const MAX_BODY = 4096;

function assertOpenAIError(res, status) {
    assert.equal(res.status, status, res.body.toString());
    assert.match(res.headers['content-type'] ?? '', /^application\/json/);
    const j = JSON.parse(res.body.toString('utf8'));
    assert.ok(j.error && typeof j.error === 'object', `no "error" object: ${res.body}`);
    assert.equal(typeof j.error.message, 'string');
    assert.ok(j.error.message.length > 0, 'empty error.message');
    assert.equal(typeof j.error.type, 'string');
    assert.ok(j.error.type.length > 0, 'empty error.type');
    assert.ok('code' in j.error, 'no error.code');
    assert.equal(res.headers['content-length'], String(res.body.length));
    return j.error;
}

describe('upstream unreachable', { skip: NEEDS_PROXY }, () => {
    let t;
    before(async () => {
        t = await openTarget({ upstream: `http://127.0.0.1:${await closedPort()}` });
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    it('POST /v1/chat/completions → 502 with an OpenAI-style error body', async () => {
        const res = await rawRequest(t.origin, { headers: jsonHeaders({ 'x-request-id': 'e2e-502' }), body: chatBody() });
        assertOpenAIError(res, 502);
        assert.equal(res.headers['x-request-id'], 'e2e-502');
        const a = await t.proc.waitAccessLine('e2e-502');
        assert.equal(a.status, 502);
    });

    it('streamed request and GET /v1/models → 502 too', async () => {
        assertOpenAIError(await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody({ stream: true }) }), 502);
        assertOpenAIError(await rawRequest(t.origin, { method: 'GET', path: '/v1/models' }), 502);
    });

    it('the SDK sees an InternalServerError with status 502', async () => {
        await assert.rejects(t.client().chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES }), (err) => {
            assert.ok(err instanceof OpenAI.InternalServerError, String(err));
            assert.equal(err.status, 502);
            return true;
        });
    });

    it('the API key never appears in what astgate prints', () => {
        assertNoSecrets(t.proc);
    });
});

describe('timeouts and body limits (from a config file)', { skip: NEEDS_PROXY }, () => {
    let t;
    before(async () => {
        t = await openTarget({
            config: (fake) =>
                writeConfig({
                    listen: '127.0.0.1:0',
                    upstream: fake.url,
                    rules: [path.join(ROOT, RULES)],
                    timeouts: { connect_ms: 2000, upstream_ms: UPSTREAM_MS },
                    limits: { max_request_body: MAX_BODY },
                }),
        });
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    it('a normal request still works', async () => {
        t.fake.enqueue({ content: ['Fine.'] });
        const res = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody() });
        assert.equal(res.status, 200);
        assert.equal(JSON.parse(res.body).choices[0].message.content, 'Fine.');
    });

    for (const stream of [false, true]) {
        it(`an upstream that never answers → 504 after timeouts.upstream_ms (${stream ? 'streamed' : 'not streamed'})`, async () => {
            t.fake.enqueue({ hang: true });
            const started = Date.now();
            const res = await withTimeout(
                rawRequest(t.origin, { headers: jsonHeaders({ 'x-request-id': `e2e-504-${stream}` }), body: chatBody({ stream }) }),
                10000,
                'the 504',
            );
            const took = Date.now() - started;
            assertOpenAIError(res, 504);
            assert.ok(took >= UPSTREAM_MS - 50, `504 after ${took} ms, before the ${UPSTREAM_MS} ms timeout`);
            assert.ok(took < 5000, `504 only after ${took} ms`);
            const rec = t.fake.requests.at(-1);
            await withTimeout(rec.closed, 5000, 'astgate to close the timed-out upstream request');
            assert.equal(rec.aborted, true);
        });
    }

    it(`a body over limits.max_request_body (${MAX_BODY}) with Content-Length → 413, not forwarded`, async () => {
        const before = t.fake.requests.length;
        const big = chatBody({ extra: { padding: 'x'.repeat(MAX_BODY * 2) } });
        const res = await rawRequest(t.origin, { headers: jsonHeaders(), body: big });
        assert.equal(res.status, 413);
        assert.equal(t.fake.requests.length, before, 'the oversized request reached the upstream');
    });

    it('a chunked body over the limit → 413', async () => {
        const piece = Buffer.from('x'.repeat(1024));
        const parts = [Buffer.from('{"model":"gpt-4o-mini","padding":"')];
        for (let i = 0; i < 8; i++) parts.push(piece);
        parts.push(Buffer.from('"}'));
        const res = await rawRequest(t.origin, { headers: jsonHeaders({ 'transfer-encoding': 'chunked' }), body: parts });
        assert.equal(res.status, 413);
    });

    it('a body just under the limit passes', async () => {
        const body = chatBody({ extra: { padding: 'y'.repeat(MAX_BODY - 300) } });
        assert.ok(Buffer.byteLength(body) < MAX_BODY);
        t.fake.enqueue({ content: ['Under the limit.'] });
        const res = await rawRequest(t.origin, { headers: jsonHeaders(), body });
        assert.equal(res.status, 200, res.body.toString());
        assert.ok(t.fake.requests.at(-1).body.equals(Buffer.from(body)));
    });

    it('the API key never appears in what astgate prints', () => {
        assertNoSecrets(t.proc);
    });
});

describe('client timeouts (timeouts.client_ms, header_ms, keepalive_ms)', { skip: NEEDS_PROXY }, () => {
    const CLIENT_MS = 400;
    const PROSE = 'Here is the agent.\n\n';
    const CODE = "```ts\nimport { Agent } from '@mastra/core/agent';\nexport const a = new Agent({ name: 'a', model: 'openai/gpt-4o' });\n```\n";
    let t;
    before(async () => {
        t = await openTarget({
            config: (fake) =>
                writeConfig({
                    listen: '127.0.0.1:0',
                    upstream: fake.url,
                    rules: [path.join(ROOT, RULES)],
                    timeouts: { client_ms: CLIENT_MS, header_ms: CLIENT_MS, keepalive_ms: CLIENT_MS },
                }),
        });
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    // resolves with the ms from `sent` until astgate closed the socket, and what it sent before
    function closedAfter(sock, sent) {
        return new Promise((resolve, reject) => {
            const got = [];
            sock.on('data', (d) => got.push(d));
            sock.on('error', reject);
            sock.on('close', () => resolve({ ms: Date.now() - sent.at, bytes: Buffer.concat(got) }));
        });
    }
    function connect() {
        const { hostname, port } = new URL(t.origin);
        return new Promise((resolve, reject) => {
            const s = net.connect({ host: hostname, port: Number(port) }, () => resolve(s));
            s.on('error', reject);
        });
    }

    it('a client that stops in the middle of its request headers is disconnected after header_ms', async () => {
        const before = t.fake.requests.length;
        const sock = await connect();
        const sent = { at: Date.now() };
        const closed = closedAfter(sock, sent);
        sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: appl');
        const { ms } = await withTimeout(closed, 10000, 'astgate to drop the silent client');
        assert.ok(ms >= CLIENT_MS - 50, `closed after ${ms} ms, before the ${CLIENT_MS} ms timeout`);
        assert.ok(ms < 5000, `closed only after ${ms} ms`);
        assert.equal(t.fake.requests.length, before, 'a partial request reached the upstream');
    });

    it('a streamed reply that pauses for longer than client_ms still reaches the client whole', async () => {
        t.fake.enqueue(async (rec, res, h) => {
            const w = h.sse({});
            await w.role(0);
            await w.content(0, PROSE);
            // the pause is what this test is about: three client timeouts without a byte
            await new Promise((r) => setTimeout(r, 3 * CLIENT_MS));
            await w.content(0, CODE);
            await w.finish(0);
            await w.done();
            res.end();
        });
        const stream = await t.client().chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true });
        let text = '';
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
        assert.equal(text, cliRewriteText(PROSE + CODE));
    });

    it('an idle keep-alive connection is closed keepalive_ms after its last reply', async () => {
        t.fake.enqueue({ content: ['Fine.'] });
        const sock = await connect();
        const sent = { at: 0 };
        const closed = closedAfter(sock, sent);
        const body = chatBody();
        sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        // the reply ends with the body of a Content-Length response: wait for all of it
        await withTimeout(
            new Promise((resolve) => {
                let buf = Buffer.alloc(0);
                const onData = (d) => {
                    buf = Buffer.concat([buf, d]);
                    const head = buf.indexOf('\r\n\r\n');
                    const m = /content-length: *(\d+)/i.exec(buf.subarray(0, head).toString());
                    if (head >= 0 && m && buf.length >= head + 4 + Number(m[1])) {
                        sock.off('data', onData);
                        sent.at = Date.now();
                        resolve();
                    }
                };
                sock.on('data', onData);
            }),
            10000,
            'the reply',
        );
        const { ms, bytes } = await withTimeout(closed, 10000, 'astgate to close the idle connection');
        assert.match(bytes.toString(), /^HTTP\/1\.1 200/);
        assert.ok(ms >= CLIENT_MS - 50, `closed ${ms} ms after the reply, before the ${CLIENT_MS} ms timeout`);
        assert.ok(ms < 5000, `closed only ${ms} ms after the reply`);
    });
});
