// What astgate passes through as it is: other paths (/v1/models, /v1/embeddings), request bodies,
// end-to-end headers both ways (hop-by-hop ones dropped), upstream HTTP errors; x-request-id kept
// or generated; the access log; and no API key in anything astgate prints.

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { FIXED, API_ERROR_401, DEFAULT_MODEL } from './fake-upstream.mjs';
import {
    API_KEY,
    PROXIED,
    NEEDS_PROXY,
    loadCorpus,
    want,
    openTarget,
    rawRequest,
    jsonHeaders,
    chatBody,
    assertNoSecrets,
    REQUEST_TIMEOUT_MS,
} from './helpers.mjs';

const corpus = loadCorpus();
const rewritten = corpus.find((c) => c.input !== c.expected) ?? corpus[0];

describe('pass-through', () => {
    let t;
    let client;
    before(async () => {
        t = await openTarget();
        client = t.client();
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    it('GET /v1/models (with a query string) comes back byte for byte', async () => {
        const res = await rawRequest(t.origin, { method: 'GET', path: '/v1/models?limit=3&order=asc', headers: { authorization: `Bearer ${API_KEY}` } });
        assert.equal(res.status, 200);
        assert.ok(res.body.equals(FIXED.models), 'body bytes');
        assert.match(res.headers['content-type'], /^application\/json/);
        const rec = t.fake.requests.at(-1);
        assert.equal(rec.method, 'GET');
        assert.equal(rec.path, '/v1/models?limit=3&order=asc');
        assert.equal(rec.headers.authorization, `Bearer ${API_KEY}`);
        const list = await client.models.list();
        assert.equal(list.data.length, 3);
    });

    it('POST /v1/embeddings: request and response bytes unchanged', async () => {
        const body = '{"model": "text-embedding-3-small",\n  "input": "const a = new Agent({ model: \'gpt-4o\' }) — é",  "encoding_format":"float"}';
        const res = await rawRequest(t.origin, { path: '/v1/embeddings', headers: jsonHeaders(), body });
        assert.equal(res.status, 200);
        assert.ok(res.body.equals(FIXED.embeddings), 'response bytes');
        const rec = t.fake.requests.at(-1);
        assert.equal(rec.path, '/v1/embeddings');
        assert.ok(rec.body.equals(Buffer.from(body)), 'request bytes');
        const e = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'x', encoding_format: 'float' });
        assert.equal(e.data[0].embedding.length, 5);
    });

    it('the chat request body is forwarded byte for byte (odd spacing, unicode, unknown fields)', async () => {
        const body = Buffer.from(
            '{ "model" : "gpt-4o-mini" ,\r\n "messages":[{"role":"user","content":"Écris un agent \\u00e9 😀"}],\n\t"x_unknown": {"a": [1, 2.50, null]}, "temperature":0.70 }',
        );
        t.fake.enqueue({ content: [rewritten.input] });
        const res = await rawRequest(t.origin, { headers: jsonHeaders(), body });
        assert.equal(res.status, 200);
        assert.ok(t.fake.requests.at(-1).body.equals(body));
        assert.equal(JSON.parse(res.body).choices[0].message.content, want(rewritten));
    });

    it('end-to-end request headers reach the upstream; upstream response headers reach the client', async () => {
        t.fake.enqueue({ content: ['Plain prose.'] });
        const res = await rawRequest(t.origin, {
            headers: jsonHeaders({ 'openai-organization': 'org-e2e', 'openai-project': 'proj_e2e', 'x-custom-e2e': 'kept', 'user-agent': 'e2e-agent/1.0' }),
            body: chatBody(),
        });
        assert.equal(res.status, 200);
        const h = t.fake.requests.at(-1).headers;
        assert.equal(h.authorization, `Bearer ${API_KEY}`);
        assert.equal(h['openai-organization'], 'org-e2e');
        assert.equal(h['openai-project'], 'proj_e2e');
        assert.equal(h['x-custom-e2e'], 'kept');
        assert.equal(h['user-agent'], 'e2e-agent/1.0');
        assert.equal(h['content-type'], 'application/json');
        assert.equal(res.headers['openai-processing-ms'], '321');
        assert.equal(res.headers['openai-organization'], 'org-e2e');
        assert.equal(res.headers['x-ratelimit-remaining-requests'], '4999');
    });

    it('hop-by-hop request headers are not forwarded', { skip: NEEDS_PROXY }, async () => {
        t.fake.enqueue({ content: ['Plain prose.'] });
        const res = await rawRequest(t.origin, {
            headers: jsonHeaders({
                connection: 'keep-alive, x-hop-test',
                'x-hop-test': 'drop-me',
                'keep-alive': 'timeout=5',
                'proxy-authorization': 'Basic ZTJlOmUyZQ==',
                'x-custom-e2e': 'kept',
            }),
            body: chatBody(),
        });
        assert.equal(res.status, 200);
        const h = t.fake.requests.at(-1).headers;
        assert.equal(h['x-custom-e2e'], 'kept');
        assert.equal(h['x-hop-test'], undefined, 'a header named in Connection was forwarded');
        assert.equal(h['keep-alive'], undefined, 'Keep-Alive was forwarded');
        assert.equal(h['proxy-authorization'], undefined, 'Proxy-Authorization was forwarded');
        assert.ok(!/x-hop-test/i.test(h.connection ?? ''), 'the client Connection header was forwarded');
    });

    it('x-request-id: kept when sent (to the upstream and back), generated when not', { skip: NEEDS_PROXY }, async () => {
        t.fake.enqueue({ content: ['One.'] });
        const a = await rawRequest(t.origin, { headers: jsonHeaders({ 'x-request-id': 'e2e-rid-kept-1' }), body: chatBody() });
        assert.equal(a.headers['x-request-id'], 'e2e-rid-kept-1');
        assert.equal(t.fake.requests.at(-1).headers['x-request-id'], 'e2e-rid-kept-1');
        t.fake.enqueue({ content: ['Two.'] });
        const b = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody() });
        t.fake.enqueue({ content: ['Three.'] });
        const c = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody() });
        const idB = b.headers['x-request-id'];
        const idC = c.headers['x-request-id'];
        assert.ok(idB && idB.length >= 8, `generated x-request-id: ${idB}`);
        assert.ok(idC && idC !== idB, 'generated ids differ per request');
        // also on pass-through paths and streams
        const m = await rawRequest(t.origin, { method: 'GET', path: '/v1/models', headers: { 'x-request-id': 'e2e-rid-models' } });
        assert.equal(m.headers['x-request-id'], 'e2e-rid-models');
        t.fake.enqueue({ content: ['Four.'] });
        const s = await fetch(`${t.origin}/v1/chat/completions`, {
            method: 'POST',
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
            headers: jsonHeaders({ 'x-request-id': 'e2e-rid-stream' }),
            body: chatBody({ stream: true }),
        });
        await s.text();
        assert.equal(s.headers.get('x-request-id'), 'e2e-rid-stream');
    });

    it('an upstream 401 comes back unchanged (status, headers, body bytes)', async () => {
        t.fake.enqueue({ status: 401 });
        const res = await rawRequest(t.origin, { headers: jsonHeaders({ 'x-request-id': 'e2e-401' }), body: chatBody() });
        const rec = t.fake.requests.at(-1);
        assert.equal(res.status, 401);
        assert.ok(res.body.equals(rec.reply.body), 'body bytes');
        assert.equal(res.headers['x-fake-error'], 'yes');
        assert.match(res.headers['content-type'], /^application\/json/);
        t.fake.enqueue({ status: 401 });
        await assert.rejects(client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }), (err) => {
            assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
            assert.equal(err.code, API_ERROR_401.error.code);
            assert.equal(err.error.message, API_ERROR_401.error.message);
            return true;
        });
    });

    it('an upstream 429 with retry-after, streamed request: passed through unchanged', async () => {
        const error = { error: { message: 'Rate limit reached for gpt-4o-mini.', type: 'requests', param: null, code: 'rate_limit_exceeded' } };
        t.fake.enqueue({ status: 429, error, headers: { 'retry-after': '7' } });
        const res = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody({ stream: true }) });
        assert.equal(res.status, 429);
        assert.equal(res.headers['retry-after'], '7');
        assert.ok(res.body.equals(t.fake.requests.at(-1).reply.body), 'body bytes');
    });

    it('a gzip-accepting client still gets the rewritten reply (upstream may compress)', async () => {
        t.fake.enqueue({ content: [rewritten.input], gzip: true });
        const r = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
        assert.equal(r.choices[0].message.content, want(rewritten));
    });

    it('access log: one JSON line per request with the contract fields', { skip: NEEDS_PROXY }, async () => {
        t.fake.enqueue({ content: [rewritten.input] });
        const res = await rawRequest(t.origin, { headers: jsonHeaders({ 'x-request-id': 'e2e-access-1' }), body: chatBody() });
        assert.equal(res.status, 200);
        const a = await t.proc.waitAccessLine('e2e-access-1');
        assert.equal(a.method, 'POST');
        assert.equal(a.path, '/v1/chat/completions');
        assert.equal(a.status, 200);
        assert.equal(a.upstream_status, 200);
        // the contract says "bytes"; "bytes_out" (with "bytes_in") is accepted too
        const out = a.bytes ?? a.bytes_out;
        assert.equal(typeof out, 'number', `no bytes / bytes_out in ${JSON.stringify(a)}`);
        if ('bytes_out' in a) assert.equal(a.bytes_out, res.body.length, 'bytes_out = the body sent');
        else assert.ok(out > 0);
        assert.equal(typeof a.upstream_ms, 'number', `upstream_ms in ${JSON.stringify(a)}`);
        assert.ok(a.upstream_ms >= 0);
        assert.equal(typeof a.added_ms, 'number', `added_ms in ${JSON.stringify(a)}`);
        assert.ok(a.added_ms >= 0);

        t.fake.enqueue({ status: 401 });
        await rawRequest(t.origin, { headers: jsonHeaders({ 'x-request-id': 'e2e-access-401' }), body: chatBody() });
        const b = await t.proc.waitAccessLine('e2e-access-401');
        assert.equal(b.status, 401);
        assert.equal(b.upstream_status, 401);

        await rawRequest(t.origin, { method: 'GET', path: '/v1/models', headers: { 'x-request-id': 'e2e-access-models' } });
        const m = await t.proc.waitAccessLine('e2e-access-models');
        assert.equal(m.method, 'GET');
        assert.equal(m.path, '/v1/models');
        assert.equal(m.status, 200);
    });

    it('API keys in Authorization, api-key and x-api-key reach the upstream and never appear in what astgate prints', async () => {
        t.fake.enqueue({ content: [rewritten.input] });
        const res = await rawRequest(t.origin, {
            headers: jsonHeaders({ 'api-key': API_KEY, 'x-api-key': API_KEY, 'x-request-id': 'e2e-secret' }),
            body: chatBody(),
        });
        assert.equal(res.status, 200);
        const h = t.fake.requests.at(-1).headers;
        assert.equal(h['api-key'], API_KEY);
        assert.equal(h['x-api-key'], API_KEY);
        if (PROXIED) {
            await t.proc.waitAccessLine('e2e-secret');
            assertNoSecrets(t.proc, [API_KEY, 'sk-test-secret']);
            assert.ok(t.proc.jsonLines().some((j) => j.request_id === 'e2e-secret'), 'the request was logged at all');
        }
    });

    it('model names in the upstream reply are left alone (only code is rewritten)', async () => {
        t.fake.enqueue({ content: ['Use gpt-4o for this.'], model: DEFAULT_MODEL });
        const r = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
        assert.equal(r.model, DEFAULT_MODEL);
        assert.equal(r.choices[0].message.content, 'Use gpt-4o for this.');
        assert.equal(t.fake.requests.at(-1).json.model, 'gpt-4o', 'the request model is not rewritten');
    });
});
