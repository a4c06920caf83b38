// A rule with metadata.astgate.action: block (eval($X), added to the Mastra rule in a temp rules
// file). Not streamed: an OpenAI-style error, status 422 (or block_status from the config), type
// astgate_blocked, code = the rule id. Streamed: the prose before the block arrives, the held code
// block is replaced by an error event, and the stream ends cleanly.

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { DEFAULT_ID } from './fake-upstream.mjs';
import {
    NEEDS_PROXY,
    ROOT,
    RULES,
    openTarget,
    rawRequest,
    jsonHeaders,
    chatBody,
    parseSSE,
    writeRules,
    writeConfig,
    withTimeout,
    cliRewriteText,
    loadCorpus,
    assertNoSecrets,
    REQUEST_TIMEOUT_MS,
} from './helpers.mjs';

const BLOCK_RULE = `id: no-eval
language: TypeScript
severity: error
message: eval runs arbitrary code
rule:
  pattern: eval($X)
metadata:
  astgate:
    action: block
`;
const MESSAGES = [{ role: 'user', content: 'Parse the expression.' }];
const PROSE = 'Careful: this evaluates whatever the user typed.\n\n';
const CODE = "```ts\nexport function calc(userInput: string) {\n  return eval(userInput);\n}\n```";
const AFTER = '\n\nPrefer a real parser.\n';
const EVAL_REPLY = PROSE + CODE + AFTER;

function rulesWithBlock() {
    const mastra = fs.readFileSync(path.join(ROOT, RULES), 'utf8');
    return writeRules(mastra + '\n---\n' + BLOCK_RULE);
}

function assertBlockedError(err, where) {
    assert.ok(err && typeof err === 'object', `${where}: no error object`);
    assert.equal(err.type, 'astgate_blocked', `${where}: error.type`);
    assert.equal(err.code, 'no-eval', `${where}: error.code`);
    assert.equal(typeof err.message, 'string', `${where}: error.message`);
    assert.ok(err.message.length > 0, `${where}: empty error.message`);
}

describe('block rule, default status', { skip: NEEDS_PROXY }, () => {
    let t;
    let client;
    let rules;
    before(async () => {
        rules = rulesWithBlock();
        t = await openTarget({ rules });
        client = t.client();
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    it('not streamed: 422, OpenAI-style error with type astgate_blocked and code = rule id; logged', async () => {
        t.fake.enqueue({ content: [EVAL_REPLY], style: 'pretty' });
        const res = await rawRequest(t.origin, { headers: jsonHeaders({ 'x-request-id': 'e2e-block-1' }), body: chatBody() });
        assert.equal(res.status, 422, res.body.toString());
        assert.match(res.headers['content-type'] ?? '', /^application\/json/);
        assert.equal(res.headers['content-length'], String(res.body.length));
        const j = JSON.parse(res.body);
        assertBlockedError(j.error, 'body');
        assert.ok(!res.body.includes('eval(userInput)'), 'the blocked code leaked into the error');
        const line = await withTimeout(
            t.proc.waitLine((l) => l.includes('e2e-block-1') && l.includes('no-eval')),
            5000,
            'the block log line',
        );
        const log = JSON.parse(line);
        assert.equal(log.rule, 'no-eval');
        assert.equal(log.action, 'block');
        assert.equal(log.streamed, false);
    });

    it('not streamed through the SDK: UnprocessableEntityError', async () => {
        t.fake.enqueue({ content: [EVAL_REPLY] });
        await assert.rejects(client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES }), (err) => {
            assert.ok(err instanceof OpenAI.UnprocessableEntityError, String(err));
            assert.equal(err.status, 422);
            assert.equal(err.code, 'no-eval');
            assert.equal(err.type, 'astgate_blocked');
            return true;
        });
    });

    it('not streamed, n=2 with the eval in choice 1 only: the reply is blocked', async () => {
        t.fake.enqueue({ content: ['Nothing to see.', EVAL_REPLY] });
        const res = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody({ n: 2 }) });
        assert.equal(res.status, 422);
        assertBlockedError(JSON.parse(res.body).error, 'body');
    });

    for (const seed of [0, 1, 2, 3, 4]) {
        it(`streamed (seed ${seed}): prose, then an error event instead of the block, then a clean end`, async () => {
            t.fake.enqueue({ content: [EVAL_REPLY], seed });
            const res = await fetch(`${t.origin}/v1/chat/completions`, {
                method: 'POST',
                signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
                headers: jsonHeaders({ 'x-request-id': `e2e-block-s${seed}` }),
                body: chatBody({ stream: true }),
            });
            assert.equal(res.status, 200);
            const text = await res.text(); // rejects when the stream is cut instead of ended
            const px = parseSSE(text);
            assert.equal(px.trailing, '', 'the stream ends inside an event');
            let content = '';
            let errorAt = -1;
            px.events.forEach((ev, i) => {
                if (ev.data === '[DONE]') return;
                const j = JSON.parse(ev.data);
                if (ev.event === 'error' || 'error' in j) {
                    assert.equal(errorAt, -1, 'more than one error event');
                    errorAt = i;
                    assertBlockedError(j.error, 'error event');
                    return;
                }
                assert.equal(errorAt, -1, `an event after the error event: ${ev.data}`);
                assert.equal(j.id, DEFAULT_ID);
                for (const ch of j.choices) content += ch.delta?.content ?? '';
            });
            assert.ok(errorAt >= 0, 'no error event');
            const rest = px.events.slice(errorAt + 1).map((e) => e.data);
            assert.ok(rest.length === 0 || (rest.length === 1 && rest[0] === '[DONE]'), `after the error: ${JSON.stringify(rest)}`);
            assert.equal(content, PROSE, 'the client gets exactly the prose before the blocked block');
            assert.ok(!text.includes('eval(userInput)'), 'blocked code reached the client');
            const line = await withTimeout(
                t.proc.waitLine((l) => l.includes(`e2e-block-s${seed}`) && l.includes('no-eval')),
                5000,
                'the block log line',
            );
            assert.equal(JSON.parse(line).streamed, true);
        });
    }

    it('streamed through the SDK: the iteration throws an APIError with the rule id', async () => {
        t.fake.enqueue({ content: [EVAL_REPLY], seed: 11 });
        const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES, stream: true });
        let content = '';
        await assert.rejects(
            (async () => {
                for await (const chunk of stream) content += chunk.choices[0]?.delta?.content ?? '';
            })(),
            (err) => {
                assert.ok(err instanceof OpenAI.APIError, String(err));
                assert.equal(err.code, 'no-eval');
                assert.equal(err.type, 'astgate_blocked');
                return true;
            },
        );
        assert.equal(content, PROSE);
    });

    it('streamed n=2, block in choice 0: an error event and a clean end, no blocked code', async () => {
        t.fake.enqueue({ content: [EVAL_REPLY, 'The other choice, prose only.\n'], seed: 12 });
        const res = await fetch(`${t.origin}/v1/chat/completions`, { method: 'POST', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), headers: jsonHeaders(), body: chatBody({ n: 2, stream: true }) });
        const text = await res.text();
        const px = parseSSE(text);
        const errs = px.events.filter((e) => e.data !== '[DONE]' && (e.event === 'error' || 'error' in JSON.parse(e.data)));
        assert.equal(errs.length, 1);
        assertBlockedError(JSON.parse(errs[0].data).error, 'error event');
        assert.ok(!text.includes('eval(userInput)'));
    });

    it('replies without eval still get the Mastra rewrite through the same rules file', async () => {
        const c = loadCorpus().find((x) => x.input !== x.expected);
        t.fake.enqueue({ content: [c.input] });
        const r = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: MESSAGES });
        assert.equal(r.choices[0].message.content, c.expected);
        assert.equal(c.expected, cliRewriteText(c.input, rules));
    });

    it('the API key never appears in what astgate prints', () => {
        assertNoSecrets(t.proc);
    });
});

describe('block rule, block_status from the config', { skip: NEEDS_PROXY }, () => {
    let t;
    before(async () => {
        const rules = rulesWithBlock();
        t = await openTarget({
            rules,
            config: (fake) => writeConfig({ listen: '127.0.0.1:0', upstream: fake.url, rules: [rules], block_status: 403 }),
        });
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    it('not streamed: the configured status, same error body', async () => {
        t.fake.enqueue({ content: [EVAL_REPLY] });
        const res = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody() });
        assert.equal(res.status, 403, res.body.toString());
        assertBlockedError(JSON.parse(res.body).error, 'body');
    });
});

describe('block rule in shadow mode', { skip: NEEDS_PROXY }, () => {
    let t;
    before(async () => {
        const rules = rulesWithBlock();
        t = await openTarget({
            rules,
            config: (fake) => writeConfig({ listen: '127.0.0.1:0', upstream: fake.url, rules: [rules], mode: 'shadow' }),
        });
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    it('not streamed: nothing is blocked; the reply comes through as the upstream sent it, the block logged as shadowed', async () => {
        t.fake.enqueue({ content: [EVAL_REPLY] });
        const res = await rawRequest(t.origin, { headers: jsonHeaders({ 'x-request-id': 'e2e-shadow-block' }), body: chatBody() });
        assert.equal(res.status, 200, res.body.toString());
        assert.equal(JSON.parse(res.body).choices[0].message.content, EVAL_REPLY);
        const line = await withTimeout(
            t.proc.waitLine((l) => l.includes('e2e-shadow-block') && l.includes('no-eval')),
            5000,
            'the shadowed block line',
        );
        const log = JSON.parse(line);
        assert.equal(log.action, 'block');
        assert.equal(log.mode, 'shadow');
    });

    it('streamed: no error event; the text arrives whole', async () => {
        t.fake.enqueue({ content: [EVAL_REPLY], seed: 3 });
        const res = await rawRequest(t.origin, { headers: jsonHeaders(), body: chatBody({ stream: true }) });
        assert.equal(res.status, 200);
        const { events } = parseSSE(res.body.toString());
        assert.ok(!events.some((e) => e.data !== '[DONE]' && JSON.parse(e.data).error), 'an error event in shadow mode');
        const text = events
            .filter((e) => e.data !== '[DONE]')
            .map((e) => JSON.parse(e.data).choices?.[0]?.delta?.content ?? '')
            .join('');
        assert.equal(text, EVAL_REPLY);
    });
});
