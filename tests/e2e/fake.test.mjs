// The fake upstream checked on its own: the official openai SDK pointed straight at it (no astgate)
// must accept everything it sends, and its splits must really be hostile. Runs in every mode.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
    FakeUpstream,
    splitText,
    fenceCutPoints,
    pyDumps,
    serialize,
    STYLES,
    FIXED,
    API_ERROR_401,
    DEFAULT_ID,
    DEFAULT_MODEL,
} from './fake-upstream.mjs';
import { API_KEY, loadCorpus, makeClient, rawRequest, jsonHeaders, chatBody, parseSSE, withTimeout, sdkStreamContents } from './helpers.mjs';

const corpus = loadCorpus();
const MESSAGES = [{ role: 'user', content: 'hi' }];

describe('splitText', () => {
    it('the deltas add up to the text, for every case and mode, never splitting a surrogate pair', () => {
        for (const c of corpus) {
            for (let seed = 0; seed < 10; seed++) {
                const d = splitText(c.input, seed);
                assert.equal(d.join(''), c.input, `${c.name} seed ${seed}`);
                for (const x of d) {
                    assert.ok(x.length > 0);
                    assert.ok(JSON.stringify(x).indexOf('\\ud') < 0, `${c.name} seed ${seed}: lone surrogate`);
                }
            }
        }
    });

    it('cuts land between backticks, right after a fence, inside the info string and between \\r and \\n', () => {
        const seen = { between: 0, afterFence: 0, inInfo: 0, crlf: 0, whole: 0 };
        for (const c of corpus) {
            const fences = fenceCutPoints(c.input);
            for (let seed = 0; seed < 10; seed++) {
                const d = splitText(c.input, seed);
                if (d.length === 1) seen.whole++;
                let pos = 0;
                const cuts = new Set();
                for (const x of d.slice(0, -1)) cuts.add((pos += x.length));
                for (const g of fences) {
                    const p = g[1];
                    if (cuts.has(p + 1) || cuts.has(p + 2)) seen.between++;
                    if (cuts.has(g[5])) seen.afterFence++;
                    if (g[7] > g[5] + 1 && cuts.has(g[6])) seen.inInfo++;
                }
                for (const cut of cuts) if (c.input[cut - 1] === '\r' && c.input[cut] === '\n') seen.crlf++;
            }
        }
        for (const [k, v] of Object.entries(seen)) assert.ok(v > 0, `no split of kind ${k}: ${JSON.stringify(seen)}`);
    });
});

describe('serialisations', () => {
    it('python-style JSON (", " / ": ", ensure_ascii) parses back to the same object', () => {
        const obj = { a: 'é ✓ 😀 "q" \\ \n\r\t\u0001\u007f', b: [1, 2.5, null, true], c: { d: [] } };
        const text = pyDumps(obj);
        assert.ok(/^[\x20-\x7e]*$/.test(text), 'ASCII only');
        assert.ok(text.includes('\\ud83d\\ude00'), 'astral chars as surrogate escapes');
        assert.deepEqual(JSON.parse(text), obj);
        for (const s of STYLES) assert.deepEqual(JSON.parse(serialize(obj, s)), obj);
    });
});

describe('the fake upstream through the openai SDK', () => {
    let fake;
    let client;
    before(async () => {
        fake = await FakeUpstream.start();
        client = makeClient(fake.url + '/v1');
    });
    after(async () => {
        await fake.close();
    });

    it('non-streamed replies in every style, n=1 and n=2, record the request', async () => {
        for (const [k, c] of corpus.slice(0, 12).entries()) {
            const style = STYLES[k % STYLES.length];
            fake.enqueue({ content: [c.input, corpus[k + 1].input], style });
            const r = await client.chat.completions.create({ model: 'gpt-4o-mini', n: 2, messages: MESSAGES });
            assert.equal(r.choices[0].message.content, c.input, style);
            assert.equal(r.choices[1].message.content, corpus[k + 1].input, style);
            assert.equal(r.choices[0].message.refusal, null);
            assert.deepEqual(r.choices[0].message.annotations, []);
            assert.equal(r.choices[0].logprobs, null);
            assert.ok(r.usage.total_tokens > 0);
            const rec = fake.requests.at(-1);
            assert.equal(rec.headers.authorization, `Bearer ${API_KEY}`);
            assert.equal(rec.json.n, 2);
            // the recorded literal spans hold exactly the contents
            for (const [i, lit] of rec.reply.literals.entries()) {
                assert.equal(JSON.parse(rec.reply.body.subarray(lit.start, lit.end).toString()), r.choices[i].message.content);
            }
        }
        const pretty = fake.requests.filter((r) => r.reply.body?.includes('\n  "id": '));
        assert.ok(pretty.length > 0, 'some replies are pretty-printed with 2 spaces');
    });

    it('streamed replies: the SDK raw Stream and finalChatCompletion() accept every split and interleaving', async () => {
        for (const [k, c] of corpus.slice(0, 20).entries()) {
            const d = corpus[(k + 7) % corpus.length];
            fake.enqueue({ content: [c.input, d.input], seed: k, usage: true });
            const s = await client.chat.completions.create({ model: 'm', n: 2, messages: MESSAGES, stream: true, stream_options: { include_usage: true } });
            const { contents, chunks } = await sdkStreamContents(s, 2);
            assert.deepEqual(contents, [c.input, d.input]);
            assert.deepEqual(chunks.at(-1).choices, []);
            assert.ok(chunks.every((x) => x.id === DEFAULT_ID && x.model === DEFAULT_MODEL));

            fake.enqueue({ content: [c.input, d.input], seed: 100 + k });
            const final = await client.chat.completions.stream({ model: 'm', n: 2, messages: MESSAGES }).finalChatCompletion();
            assert.equal(final.choices[0].message.content, c.input);
            assert.equal(final.choices[1].message.content, d.input);
        }
        // some chunks hold both choices
        const both = fake.requests.some((r) => r.reply.events.some((e) => e !== '[DONE]' && JSON.parse(e).choices.length === 2));
        assert.ok(both, 'no chunk carried two choices');
    });

    it('SSE bytes are written in pieces that cut lines and UTF-8 characters', async () => {
        const c = corpus.find((x) => x.name.includes('emoji')) ?? corpus[0];
        let midLine = 0;
        let midChar = 0;
        for (let seed = 0; seed < 8; seed++) {
            fake.enqueue({ content: [c.input], seed });
            const res = await rawRequest(fake.url, { headers: jsonHeaders(), body: chatBody({ stream: true }) });
            assert.equal(res.status, 200);
            const rec = fake.requests.at(-1);
            const ev = parseSSE(res.body.toString('utf8'));
            assert.deepEqual(
                ev.events.map((e) => e.data),
                rec.reply.events,
            );
            let pos = 0;
            for (const len of rec.reply.pieces.slice(0, -1)) {
                pos += len;
                if ((res.body[pos] & 0xc0) === 0x80) midChar++;
                if (res.body[pos - 1] !== 0x0a) midLine++;
            }
        }
        assert.ok(midLine > 0, 'no write ended in the middle of a line');
        assert.ok(midChar > 0, 'no write cut a multi-byte UTF-8 character');
    });

    it('GET /v1/models and POST /v1/embeddings', async () => {
        const models = await client.models.list();
        assert.deepEqual(
            models.data.map((m) => m.id),
            ['gpt-4o-mini', 'gpt-4.1-nano', 'text-embedding-3-small'],
        );
        const e = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hello', encoding_format: 'float' });
        assert.equal(e.data[0].embedding.length, 5);
        const raw = await rawRequest(fake.url, { method: 'GET', path: '/v1/models' });
        assert.ok(raw.body.equals(FIXED.models));
    });

    it('error mode: 401 with an OpenAI error body becomes AuthenticationError', async () => {
        fake.enqueue({ status: 401 });
        await assert.rejects(client.chat.completions.create({ model: 'm', messages: MESSAGES }), (err) => {
            assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
            assert.equal(err.status, 401);
            assert.equal(err.code, API_ERROR_401.error.code);
            return true;
        });
    });

    it('gzip mode: compressed only when the client accepts gzip', async () => {
        const c = corpus[0];
        fake.enqueue({ content: [c.input], gzip: true });
        const r = await client.chat.completions.create({ model: 'm', messages: MESSAGES });
        assert.equal(r.choices[0].message.content, c.input);
        assert.equal(fake.requests.at(-1).reply.headers['content-encoding'], 'gzip');
        fake.enqueue({ content: [c.input], gzip: true });
        const raw = await rawRequest(fake.url, { headers: jsonHeaders(), body: chatBody() });
        assert.equal(raw.headers['content-encoding'], undefined);
    });

    it('hang mode never answers; the fake sees the client give up', async () => {
        fake.enqueue({ hang: true });
        const quick = makeClient(fake.url + '/v1', { timeout: 200 });
        await assert.rejects(quick.chat.completions.create({ model: 'm', messages: MESSAGES }), OpenAI.APIConnectionTimeoutError);
        const rec = fake.requests.at(-1);
        await withTimeout(rec.closed, 5000, 'the fake to see the hung request close');
        assert.equal(rec.aborted, true);
    });

    it('infinite mode streams until the client goes away, and records that', async () => {
        for (const kind of ['prose', 'code']) {
            fake.enqueue({ infinite: kind, intervalMs: 5 });
            const s = await client.chat.completions.create({ model: 'm', messages: MESSAGES, stream: true });
            let n = 0;
            for await (const chunk of s) {
                if (chunk.choices[0]?.delta?.content) n++;
                if (n >= 5) break; // the SDK aborts the request
            }
            const rec = fake.requests.at(-1);
            await withTimeout(rec.closed, 5000, `the fake to see the ${kind} stream close`);
            assert.equal(rec.aborted, true);
            assert.ok(rec.progress < 1500, 'it stopped before its bound');
        }
    });

    it('nothing queued: a 500 that says so', async () => {
        const res = await rawRequest(fake.url, { headers: jsonHeaders(), body: chatBody() });
        assert.equal(res.status, 500);
        assert.match(res.body.toString(), /no reply queued/);
    });
});
