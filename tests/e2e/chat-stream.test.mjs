// POST /v1/chat/completions with stream: true, over the golden corpus. The fake splits every reply
// at seeded points (fences cut on purpose), interleaves n=2 choices, and cuts SSE lines and UTF-8
// characters across TCP writes. Checked per request (raw): the content each choice adds up to,
// id/model/created/system_fingerprint on every event, role / finish_reason / usage events in the
// upstream order with their unknown fields, [DONE] last. Checked through the SDK: the raw
// Stream and the helper's finalChatCompletion().

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_MODEL, DEFAULT_ID, DEFAULT_CREATED, DEFAULT_FINGERPRINT } from './fake-upstream.mjs';
import {
    PROXIED,
    loadCorpus,
    want,
    cliLog,
    openTarget,
    jsonHeaders,
    chatBody,
    parseSSE,
    assertStreamFaithful,
    assertRewriteLogs,
    assertNoSecrets,
    sdkStreamContents,
    annotate,
    REQUEST_TIMEOUT_MS,
} from './helpers.mjs';

const corpus = loadCorpus();
const REQ_MODEL = 'gpt-4o-mini';
const MESSAGES = [{ role: 'user', content: 'Write me a Mastra agent, please.' }];

function pairs() {
    const out = [];
    for (let i = 0; i + 1 < corpus.length; i += 2) out.push([corpus[i], corpus[i + 1]]);
    if (corpus.length % 2) out.push([corpus[corpus.length - 1], corpus[0]]);
    return out;
}

describe('chat completions, streamed', () => {
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

    // One raw streamed request: returns the assembled texts after the structural checks.
    async function rawStream(cases, { seed, includeUsage, rid, spec = {} }) {
        t.fake.enqueue({ content: cases.map((c) => c.input), seed, ...spec });
        const before = t.fake.requests.length;
        const res = await fetch(`${t.origin}/v1/chat/completions`, {
            method: 'POST',
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
            headers: jsonHeaders(rid ? { 'x-request-id': rid } : {}),
            body: chatBody({ n: cases.length, stream: true, includeUsage: includeUsage ? true : null, model: REQ_MODEL }),
        });
        const text = await res.text(); // throws if the stream is cut
        assert.equal(res.status, 200, text);
        assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
        const rec = t.fake.requests[before];
        const px = parseSSE(text);
        assertStreamFaithful(rec.reply.events, px, cases.map(want), { includeUsage: !!includeUsage });
        return { res, rec, px };
    }

    const SEEDS_N1 = [0, 1, 2, 3, 4]; // every split mode of splitText()
    const SEEDS_N2 = [5, 8]; // tiny and whole-text splits, interleaved

    corpus.forEach((c, k) => {
        it(`n=1 ${c.name}`, async () => {
            for (const s of SEEDS_N1) {
                const seed = s + 5 * k;
                await rawStream([c], { seed, includeUsage: (k + s) % 2 === 0 }).catch((err) => {
                    throw annotate(err, `seed ${seed}`);
                });
            }
        });
    });

    pairs().forEach(([a, b], k) => {
        it(`n=2 ${a.name} + ${b.name}`, async () => {
            for (const s of SEEDS_N2) {
                const seed = s + 5 * k;
                await rawStream([a, b], { seed, includeUsage: (k + s) % 2 === 1 }).catch((err) => {
                    throw annotate(err, `seed ${seed}`);
                });
            }
        });
    });

    corpus.forEach((c, k) => {
        it(`SDK n=1 ${c.name}: Stream and finalChatCompletion()`, async () => {
            t.fake.enqueue({ content: [c.input], seed: 1000 + k, usage: true });
            const stream = await client.chat.completions.create({
                model: REQ_MODEL,
                messages: MESSAGES,
                stream: true,
                stream_options: { include_usage: true },
            });
            const { contents, chunks } = await sdkStreamContents(stream, 1);
            assert.equal(contents[0], want(c));
            for (const ch of chunks) {
                assert.equal(ch.id, DEFAULT_ID);
                assert.equal(ch.model, DEFAULT_MODEL);
                assert.equal(ch.created, DEFAULT_CREATED);
                assert.equal(ch.system_fingerprint, DEFAULT_FINGERPRINT);
            }
            const last = chunks.at(-1);
            assert.deepEqual(last.choices, [], 'the usage chunk comes last with choices: []');
            assert.ok(last.usage && last.usage.total_tokens > 0, 'usage');

            t.fake.enqueue({ content: [c.input], seed: 2000 + k });
            const helper = client.chat.completions.stream({ model: REQ_MODEL, messages: MESSAGES });
            const final = await helper.finalChatCompletion();
            assert.equal(final.choices[0].message.content, want(c));
            assert.equal(final.choices[0].message.role, 'assistant');
            assert.equal(final.choices[0].finish_reason, 'stop');
        });
    });

    pairs().forEach(([a, b], k) => {
        it(`SDK n=2 ${a.name} + ${b.name}: finalChatCompletion()`, async () => {
            t.fake.enqueue({ content: [a.input, b.input], seed: 3000 + k });
            const helper = client.chat.completions.stream({ model: REQ_MODEL, messages: MESSAGES, n: 2 });
            const final = await helper.finalChatCompletion();
            assert.equal(final.choices.length, 2);
            assert.equal(final.choices[0].message.content, want(a));
            assert.equal(final.choices[1].message.content, want(b));
        });
    });

    it('SSE variants: CRLF line ends, "data:" without a space, comment lines', async () => {
        const cases = corpus.filter((c) => c.input !== c.expected).slice(0, 6);
        for (const [k, c] of cases.entries()) {
            await rawStream([c], { seed: 4000 + k, includeUsage: true, spec: { eol: '\r\n' } });
            await rawStream([c], { seed: 4100 + k, includeUsage: false, spec: { noSpace: true } });
            await rawStream([c], { seed: 4200 + k, includeUsage: true, spec: { comments: true } });
        }
    });

    it('a reply cut off by max_tokens (finish_reason length) is still flushed', async () => {
        const cases = corpus.filter((c) => c.name.includes('truncated'));
        assert.ok(cases.length > 0, 'the corpus has truncated replies');
        for (const [k, c] of cases.entries()) {
            await rawStream([c], { seed: 4300 + k, includeUsage: false, spec: { finish_reason: ['length'] } });
        }
    });

    it('rewrite log lines of a streamed request say streamed: true, per choice', { skip: !PROXIED && 'needs astgate' }, async () => {
        const cases = corpus.filter((c) => c.input !== c.expected).slice(0, 4);
        for (const [k, c] of cases.entries()) {
            const other = cases[(k + 1) % cases.length];
            const rid = `e2e-st-log-${k}`;
            const { res } = await rawStream([c, other], { seed: 4400 + k, includeUsage: true, rid });
            assert.equal(res.headers.get('x-request-id'), rid);
            await assertRewriteLogs(t.proc, rid, [cliLog(c), cliLog(other)], { streamed: true, models: [REQ_MODEL, DEFAULT_MODEL] });
        }
    });

    it('the API key never appears in what astgate prints', { skip: !PROXIED && 'needs astgate' }, () => {
        assertNoSecrets(t.proc);
    });
});
