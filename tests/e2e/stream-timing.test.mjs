// Streaming order and cancellation, synchronised by events (gates the test opens, records the fake
// keeps), never by sleeps: prose reaches the client before the upstream sends the code block; a
// code block goes out up to where a rule could still edit (stream.hold: minimal), or is held whole
// until its closing fence and then arrives as one delta (block); a client that goes
// away mid-stream cancels the upstream transfer at once, also while a code block is held.

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_ID, DEFAULT_MODEL, DEFAULT_CREATED } from './fake-upstream.mjs';
import { PROXIED, RULES, openTarget, writeConfig, jsonHeaders, chatBody, iterSSE, withTimeout, gate, cliRewriteText, assertNoSecrets, REQUEST_TIMEOUT_MS } from './helpers.mjs';

const MESSAGES = [{ role: 'user', content: 'Write me a Mastra agent, please.' }];
const PROSE = 'Here is the agent you asked for. It answers in French: très bien, ça marche.\n\n';
const CODE_HEAD = "```ts\nimport { Agent } from '@mastra/core/agent';\n\nexport const frenchAgent = new Agent({\n  name: 'French Agent',\n";
const CODE_TAIL = "  instructions: 'Réponds en français.',\n  model: 'openai/gpt-4o',\n});\n```";
const AFTER = '\n\nRun it with `npx mastra dev`.\n';
const GUARD_MS = 10000; // only reached when the behaviour is missing

describe('streaming order and cancellation', () => {
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

    it('the first prose reaches the client before the upstream sends the code block', async () => {
        const g = gate();
        let codeSent = false;
        let gateTimedOut = false;
        t.fake.enqueue(async (rec, res, h) => {
            const w = h.sse({});
            await w.role(0);
            await w.content(0, PROSE.slice(0, 17));
            await w.content(0, PROSE.slice(17));
            // wait for the client to have the prose (the guard only ends a failing run)
            await withTimeout(g.promise, GUARD_MS, 'prose to reach the client').catch(() => (gateTimedOut = true));
            codeSent = true;
            await w.content(0, CODE_HEAD.slice(0, 2)); // "``"
            await w.content(0, CODE_HEAD.slice(2));
            await w.content(0, CODE_TAIL);
            await w.content(0, AFTER);
            await w.finish(0);
            await w.done();
            res.end();
        });
        const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true });
        let text = '';
        let proseBeforeCode = null;
        for await (const chunk of stream) {
            assert.equal(chunk.id, DEFAULT_ID);
            text += chunk.choices[0]?.delta?.content ?? '';
            if (proseBeforeCode === null && text.includes('Here is the agent you asked for.')) {
                proseBeforeCode = !codeSent;
                g.open();
            }
        }
        g.open();
        assert.equal(gateTimedOut, false, 'the prose did not reach the client while the upstream waited');
        assert.equal(proseBeforeCode, true, 'the prose arrived only after the code block was sent');
        assert.equal(text, cliRewriteText(PROSE + CODE_HEAD + CODE_TAIL + AFTER));
    });

    it('a code block goes out up to where a rule could still edit, the rest when its fence closes (n=2 marker)', async () => {
        await heldAtMarker(t, 'minimal');
    });

    async function cancelCase(kind) {
        t.fake.enqueue({ infinite: kind, intervalMs: 20 });
        const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true });
        const rec = await t.fake.nextRequest(t.fake.requests.length - 1);
        if (kind === 'prose') {
            let n = 0;
            for await (const chunk of stream) {
                if (chunk.choices[0]?.delta?.content) n++;
                if (n >= 3) break;
            }
        } else {
            // the client sees nothing of the open block: wait for the upstream to have sent some
            await withTimeout(t.fake.waitProgress(rec, 10), GUARD_MS, 'the fake to send 10 code lines');
            stream.controller.abort();
        }
        const leftAt = Date.now();
        await withTimeout(rec.closed, 5000, 'the upstream request to be closed after the client left');
        assert.equal(rec.aborted, true, 'the upstream reply was cut, not finished');
        const lag = rec.closedAt - leftAt;
        assert.ok(lag < 2000, `the upstream was closed ${lag} ms after the client left`);
        const sentAfter = rec.progress;
        // the proxy still serves
        t.fake.enqueue({ content: ['Still here.'] });
        const r = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES });
        assert.equal(r.choices[0].message.content, 'Still here.');
        assert.ok(sentAfter < 1500, 'the infinite stream stopped');
    }

    it('client gone mid-stream (prose flowing): the upstream request is closed at once', () => cancelCase('prose'));

    it('client gone while a code block is held: the upstream request is closed at once', () => cancelCase('code'));

    it('the API key never appears in what astgate prints', { skip: !PROXIED && 'needs astgate' }, () => {
        assertNoSecrets(t.proc);
    });
});

// A code block of choice 0 open while choice 1 sends a marker: what choice 0 had sent at the marker
// (block: only its prose; minimal: its prose and the code up to where a rule could still edit, here
// the end of the import line, since the code does not import `openai` yet), and the block after.
async function heldAtMarker(t, mode) {
    const g = gate();
    const MARKER = 'Choice one: a plain answer without code.\n';
    const PROSE0 = 'Choice zero:\n\n';
    let gateTimedOut = false;
    t.fake.enqueue(async (rec, res, h) => {
        const w = h.sse({});
        await w.role(0);
        await w.role(1);
        await w.content(0, PROSE0);
        await w.content(0, CODE_HEAD.slice(0, 3)); // "```"
        await w.content(0, CODE_HEAD.slice(3));
        await w.content(1, MARKER); // sent after the partial code of choice 0
        await withTimeout(g.promise, GUARD_MS, 'the marker to reach the client').catch(() => (gateTimedOut = true));
        await w.content(0, CODE_TAIL.slice(0, -1));
        await w.content(0, CODE_TAIL.slice(-1)); // the last backtick of the closing fence
        await w.content(0, AFTER);
        await w.finish(0);
        await w.finish(1);
        await w.done();
        res.end();
    });
    const res = await fetch(`${t.origin}/v1/chat/completions`, {
        method: 'POST',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        headers: jsonHeaders({ 'x-request-id': `e2e-hold-${mode}` }),
        body: chatBody({ n: 2, stream: true }),
    });
    assert.equal(res.status, 200);
    const got = ['', ''];
    const deltas = [[], []];
    let atMarker = null;
    let done = false;
    for await (const ev of iterSSE(res)) {
        if (ev.data === '[DONE]') {
            done = true;
            continue;
        }
        const c = JSON.parse(ev.data);
        assert.equal(c.id, DEFAULT_ID);
        assert.equal(c.model, DEFAULT_MODEL);
        assert.equal(c.created, DEFAULT_CREATED);
        for (const ch of c.choices) {
            const d = ch.delta?.content;
            if (!d) continue;
            got[ch.index] += d;
            deltas[ch.index].push(d);
        }
        if (atMarker === null && got[1].includes(MARKER)) {
            atMarker = got[0];
            g.open();
        }
    }
    g.open();
    assert.equal(gateTimedOut, false, 'the prose of choice 1 did not reach the client while the upstream waited');
    assert.ok(done, 'the stream ends with [DONE]');
    assert.equal(got[1], MARKER);
    const want0 = cliRewriteText(PROSE0 + CODE_HEAD + CODE_TAIL + AFTER);
    assert.equal(got[0], want0);
    if (PROXIED) {
        // the rewrite log says how much of the block was held back at once, at most
        const line = await withTimeout(t.proc.waitLine((l) => l.includes('"type":"hold"') && l.includes(`e2e-hold-${mode}`) && l.includes('"choice":0')), 5000, 'the hold line');
        const hold = JSON.parse(line);
        assert.equal(hold.block, 0);
        assert.ok(hold.held_max > 0 && hold.held_max <= want0.length, line);
        if (mode === 'block') assert.ok(hold.held_max >= CODE_HEAD.length, `a whole-block hold holds the block: ${line}`);
        else assert.ok(hold.held_max < CODE_HEAD.length + CODE_TAIL.length, line);
    }
    if (PROXIED && mode === 'minimal') {
        assert.equal(atMarker, PROSE0 + "```ts\nimport { Agent } from '@mastra/core/agent';", 'choice 0 at the marker');
        assert.ok(want0.startsWith(atMarker));
    }
    if (PROXIED && mode === 'block') {
        assert.equal(atMarker, PROSE0, 'choice 0 had sent part of its open code block (or held back its prose)');
        const block = want0.slice(want0.indexOf('```ts'), want0.lastIndexOf('```') + 3);
        assert.ok(
            deltas[0].some((d) => d.includes(block)),
            `the code block did not arrive as one delta: ${JSON.stringify(deltas[0])}`,
        );
    }
}

describe('streaming with stream.hold: block', () => {
    let t;
    before(async () => {
        t = await openTarget({ config: (fake) => writeConfig({ listen: '127.0.0.1:0', upstream: fake.url, rules: [RULES], stream: { hold: 'block' } }) });
    });
    after(async () => {
        await t?.close();
    });

    it('a code block is held until its closing fence, then sent rewritten as one delta (n=2 marker)', async () => {
        await heldAtMarker(t, 'block');
    });
});
