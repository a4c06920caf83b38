// POST /v1/chat/completions without streaming, over the golden corpus: n=1 for every case and
// n=2 for pairs of cases. Each case runs twice: through the openai SDK (message.content of every
// choice) and as a raw request (the body is the upstream's with only the content strings changed,
// Content-Length, x-astgate-* headers, rewrite log lines, Authorization forwarded).

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { STYLES, DEFAULT_MODEL, DEFAULT_ID, DEFAULT_CREATED } from './fake-upstream.mjs';
import {
    API_KEY,
    PROXIED,
    loadCorpus,
    want,
    cliLog,
    appliedRewrites,
    openTarget,
    rawRequest,
    jsonHeaders,
    chatBody,
    assertOnlyContentChanged,
    assertRewriteHeaders,
    assertRewriteLogs,
    assertNoSecrets,
} from './helpers.mjs';

const corpus = loadCorpus();
const REQ_MODEL = 'gpt-4o-mini';

function pairs() {
    const out = [];
    for (let i = 0; i + 1 < corpus.length; i += 2) out.push([corpus[i], corpus[i + 1]]);
    if (corpus.length % 2) out.push([corpus[corpus.length - 1], corpus[0]]);
    return out;
}

describe('chat completions, not streamed', () => {
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

    async function check(cases, k) {
        const contents = cases.map((c) => c.input);
        const wants = cases.map(want);
        const style = STYLES[k % STYLES.length];

        // 1. the SDK
        t.fake.enqueue({ content: contents, style });
        const r = await client.chat.completions.create({
            model: REQ_MODEL,
            n: cases.length > 1 ? cases.length : undefined,
            messages: [{ role: 'user', content: 'Write me a Mastra agent, please.' }],
        });
        assert.equal(r.choices.length, cases.length);
        r.choices.forEach((ch, i) => {
            assert.equal(ch.index, i);
            assert.equal(ch.message.content, wants[i], `message.content of choice ${i} (${cases[i].name})`);
            assert.equal(ch.finish_reason, 'stop');
        });
        assert.equal(r.id, DEFAULT_ID);
        assert.equal(r.model, DEFAULT_MODEL);
        assert.equal(r.created, DEFAULT_CREATED);

        // 2. raw bytes
        const rid = `e2e-ns-${k}-${cases.length}`;
        t.fake.enqueue({ content: contents, style: STYLES[(k + 1) % STYLES.length] });
        const before = t.fake.requests.length;
        const body = chatBody({ n: cases.length, model: REQ_MODEL });
        const res = await rawRequest(t.origin, { headers: jsonHeaders({ 'x-request-id': rid }), body });
        assert.equal(res.status, 200, res.body.toString());
        const rec = t.fake.requests[before];
        assert.ok(rec, 'the fake got no request');
        assert.equal(rec.headers.authorization, `Bearer ${API_KEY}`, 'Authorization reached the upstream unchanged');
        assert.ok(rec.body.equals(Buffer.from(body)), 'request body forwarded byte for byte');
        assertOnlyContentChanged(rec.reply.body, rec.reply.literals, res.body, wants);
        assert.equal(res.headers['content-length'], String(res.body.length), 'Content-Length');
        assert.equal(res.headers['transfer-encoding'], undefined, 'no chunked encoding next to Content-Length');
        assert.match(res.headers['content-type'], /^application\/json/);
        if (PROXIED) {
            assert.equal(res.headers['x-request-id'], rid, 'x-request-id echoed');
            const perChoice = cases.map((c) => cliLog(c));
            assertRewriteHeaders(res.headers, perChoice.flatMap(appliedRewrites));
            await assertRewriteLogs(t.proc, rid, perChoice, { streamed: false, models: [REQ_MODEL, DEFAULT_MODEL] });
        }
    }

    corpus.forEach((c, k) => {
        it(`n=1 ${c.name}`, () => check([c], k));
    });
    pairs().forEach(([a, b], k) => {
        it(`n=2 ${a.name} + ${b.name}`, () => check([a, b], k));
    });

    it('a tool-call choice (content null) and a text choice: the null passes as is', async () => {
        const c = corpus.find((x) => x.name.startsWith('001')) ?? corpus[0];
        t.fake.enqueue({ content: [null, c.input], style: 'pretty' });
        const res = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody({ n: 2 }) });
        assert.equal(res.status, 200);
        const rec = t.fake.requests.at(-1);
        assertOnlyContentChanged(rec.reply.body, rec.reply.literals, res.body, [null, want(c)]);
        const j = JSON.parse(res.body);
        assert.equal(j.choices[0].message.content, null);
        assert.deepEqual(j.choices[0].message.tool_calls, rec.reply.object.choices[0].message.tool_calls);
    });

    it('the API key never appears in what astgate prints', { skip: !PROXIED && 'needs astgate' }, () => {
        assertNoSecrets(t.proc);
    });
});
