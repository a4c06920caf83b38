// POST /v1/chat/completions with code in tool calls (issue 13): message.tool_calls[].function
// .arguments / .custom.input, and streamed delta.tool_calls[] fragments, which astgate holds per
// (choice, index) until the call is complete and sends again as one fragment.
//
// Oracle: `astgate rewrite --tool NAME --input KIND --rules rules/mastra.yaml` (stdout = the call's
// rewritten input); without astgate (ASTGATE_BIN unset) every input must come back as it was.
// Checked for Write, Edit, apply_patch (JSON {input} and custom free text), a tool astgate does not
// know and arguments that are not JSON; one call, parallel calls (in turn and interleaved, two in a
// chunk), text plus a call, two choices; events as JSON.stringify and as Python writes them:
// - not streamed: every byte of the body but the changed input literals is the upstream's, each
//   input equals the oracle, ids/names/types kept;
// - streamed: through the raw bytes, the SDK's raw iterator (joined by index) and its
//   ChatCompletionStream helper (finalChatCompletion(), and its per-call arguments.done events
//   when the upstream sends the calls in turn), the arguments add up to the non-streamed rewrite,
//   byte for byte; a held call's input arrives in one fragment, in ascending index order; the
//   fragments of a tool astgate does not know are the upstream's, one for one;
// - the audit log names tool, call_id, argument and path; arguments that are not JSON leave a
//   tool_call_skipped line;
// - the golden corpus as Write calls to notes.md (Markdown: fences treated like a reply), and the
//   tool golden cases (tests/golden/2xx-tool-*) as the calls they describe, streamed and not;
// - a block rule: not streamed, 422 astgate_blocked; streamed, the error event ends the stream.
// The rewrite of the code itself comes from src/api/toolcode.c: while it is the stub ("not there
// yet"), the checks that need a rewrite are skipped and every input passes through.

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { pyDumps } from './fake-upstream.mjs';
import {
    PROXIED,
    NEEDS_PROXY,
    BIN,
    ROOT,
    RULES,
    loadCorpus,
    openTarget,
    jsonHeaders,
    chatBody,
    parseSSE,
    scanJsonString,
    writeRules,
    withTimeout,
    annotate,
    REQUEST_TIMEOUT_MS,
} from './helpers.mjs';

const CORE_LANDED = !fs.readFileSync(path.join(ROOT, 'src/api/toolcode.c'), 'utf8').includes('not there yet');
const REWRITES = PROXIED && CORE_LANDED;
const REQ_MODEL = 'gpt-4o-mini';
const MESSAGES = [{ role: 'user', content: 'Create the weather agent.' }];

/* ------------------------------------------------------------------------------------------ */
/* the calls                                                                                    */

const AGENT_PATH = 'src/mastra/agents/weather-agent.ts';
const AGENT_TS = `import { Agent } from '@mastra/core/agent';
import { openai } from '@ai-sdk/openai';

// "Weather" — café ✓ 🚀
export const weatherAgent = new Agent({
  name: 'Weather Agent',
  instructions: "Answer with \\"care\\":\\n\\t- one line\\n",
  model: openai('gpt-4o'),
});
`;
const EDIT_NEW = `export const helper = new Agent({ name: 'helper', instructions: 'Help (ü).', model: anthropic('claude-3-5-sonnet') });\n`;
const PATCH = `*** Begin Patch
*** Add File: src/mastra/agents/patched.ts
+import { Agent } from '@mastra/core/agent';
+
+export const patched = new Agent({
+  name: "patched — ok",
+  instructions: 'x',
+  model: 'anthropic/claude-3-5-sonnet',
+});
*** End Patch
`;

const CALLS = {
    write: { id: 'call_w1', name: 'Write', arguments: JSON.stringify({ file_path: AGENT_PATH, content: AGENT_TS }) },
    // Python's json.dumps: ", " separators, every non-ASCII character as \uXXXX (surrogate pairs)
    writePy: { id: 'call_w2', name: 'Write', arguments: pyDumps({ file_path: AGENT_PATH, content: AGENT_TS }) },
    edit: {
        id: 'call_e1',
        name: 'Edit',
        arguments: JSON.stringify({ file_path: 'src/mastra/agents/helper.ts', old_string: '// helper', new_string: EDIT_NEW }),
    },
    patch: { id: 'call_p1', name: 'apply_patch', arguments: JSON.stringify({ input: PATCH }) },
    patchCustom: { id: 'call_c1', type: 'custom', name: 'apply_patch', input: PATCH },
    unknown: { id: 'call_u1', name: 'get_weather', arguments: JSON.stringify({ city: 'Zürich', note: 'say "hi"\n', code: "new Agent({ model: 'gpt-4o' })" }) },
    notJson: { id: 'call_n1', name: 'Write', arguments: `{"file_path": "${AGENT_PATH}", "content": "import { Agent } from '@mastra/core/agent';\\nnew Agent({ model: openai('gpt-4o') ` },
};

const TEXT = "Here is the agent:\n\n```ts\nexport const a = new Agent({ name: 'a', instructions: 'x', model: 'anthropic/claude-3-5-sonnet' });\n```\n\nI will also write it to disk.\n";

const inputOf = (c) => (c.type === 'custom' ? c.input : c.arguments);
const kindOf = (c) => (c.type === 'custom' ? 'text' : 'args');

const oracleCache = new Map();
// What astgate makes of one call's input (the input itself without astgate).
function oracle(call) {
    const input = inputOf(call);
    if (!PROXIED) return input;
    const key = JSON.stringify([call.name, kindOf(call), input]);
    if (!oracleCache.has(key)) {
        const out = execFileSync(BIN, ['rewrite', '--tool', call.name, '--input', kindOf(call), '--rules', RULES], {
            cwd: ROOT,
            input,
            encoding: 'utf8',
            stdio: ['pipe', 'pipe', 'pipe'],
        });
        oracleCache.set(key, out);
    }
    return oracleCache.get(key);
}

const KNOWN = new Set(['Write', 'Edit', 'MultiEdit', 'apply_patch', 'write_to_file', 'replace_in_file', 'str_replace_editor', 'str_replace_based_edit_tool', 'mastra_workspace_write_file', 'mastra_workspace_edit_file', 'mastra_workspace_apply_patch']);

/* ------------------------------------------------------------------------------------------ */
/* reading replies                                                                              */

// Byte spans of the string literals of content / arguments / input members in a chat body. A
// JSON string never holds `"key":` unescaped, so the search cannot land inside one.
function literalSpans(buf) {
    const s = buf.toString('latin1');
    const out = [];
    for (const m of s.matchAll(/"(content|arguments|input)":\s*"/g)) {
        const start = m.index + m[0].length - 1;
        out.push({ key: m[1], start, end: scanJsonString(buf, start) });
    }
    return out;
}

// The proxy's body is the upstream's with only content/arguments/input literals replaced.
function assertOnlyLiteralsChanged(up, px) {
    const a = literalSpans(up);
    const b = literalSpans(px);
    assert.equal(b.length, a.length, 'the same string members');
    let pu = 0;
    let pp = 0;
    a.forEach((la, k) => {
        const lb = b[k];
        assert.equal(lb.key, la.key);
        assert.ok(px.subarray(pp, lb.start).equals(up.subarray(pu, la.start)), `bytes before literal ${k} (${la.key}) differ`);
        pu = la.end;
        pp = lb.end;
    });
    assert.ok(px.subarray(pp).equals(up.subarray(pu)), 'bytes after the last literal differ');
}

// Per (choice, index): {id, type, name, input, frags (non-empty input fragments), events (the
// chunk numbers of those fragments), first (chunk number of the first fragment)}.
function collectCalls(chunks) {
    const calls = new Map();
    chunks.forEach((c, ci) => {
        for (const ch of c.choices ?? []) {
            for (const tc of ch.delta?.tool_calls ?? []) {
                assert.ok(Number.isInteger(tc.index), `tool call without an index in chunk ${ci}`);
                const key = `${ch.index}:${tc.index}`;
                let e = calls.get(key);
                if (!e) {
                    e = { choice: ch.index, index: tc.index, id: null, type: null, name: null, input: '', frags: [], events: [], first: ci };
                    calls.set(key, e);
                }
                const fn = tc.function ?? tc.custom;
                for (const [k, v] of [['id', tc.id], ['type', tc.type], ['name', fn?.name]]) {
                    if (v === undefined || v === null || v === '') continue;
                    assert.ok(e[k] === null || e[k] === v, `${k} of call ${key} changed from ${e[k]} to ${v}`);
                    if (e[k] === null) assert.equal(e.input, '', `the ${k} of call ${key} came after some of its input`);
                    e[k] = v;
                }
                const piece = tc.function?.arguments ?? tc.custom?.input;
                if (typeof piece === 'string' && piece.length > 0) {
                    e.input += piece;
                    e.frags.push(piece);
                    e.events.push(ci);
                }
            }
        }
    });
    return calls;
}

function callsOf(spec) {
    return spec.tool_calls.flatMap((list, choice) => (list ?? []).map((call, index) => ({ call, choice, index })));
}

/* ------------------------------------------------------------------------------------------ */

describe('chat completions: code in tool calls', () => {
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

    let ridN = 0;
    const rid = (what) => `e2e-tc-${what}-${++ridN}`;

    // Not streamed, raw: the body against the upstream's; returns the parsed body.
    async function nonStreamed(spec, id) {
        t.fake.enqueue(spec);
        const n = spec.content.length;
        const before = t.fake.requests.length;
        const res = await fetch(`${t.origin}/v1/chat/completions`, {
            method: 'POST',
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
            headers: jsonHeaders({ 'x-request-id': id }),
            body: chatBody({ n, model: REQ_MODEL }),
        });
        const body = Buffer.from(await res.arrayBuffer());
        assert.equal(res.status, 200, body.toString());
        const rec = t.fake.requests[before];
        assertOnlyLiteralsChanged(rec.reply.body, body);
        const j = JSON.parse(body.toString('utf8'));
        for (const { call, choice, index } of callsOf(spec)) {
            const tc = j.choices[choice].message.tool_calls[index];
            assert.equal(tc.id, call.id);
            assert.equal(tc.type, call.type ?? 'function');
            const fn = tc.type === 'custom' ? tc.custom : tc.function;
            assert.equal(fn.name, call.name);
            assert.equal(tc.type === 'custom' ? fn.input : fn.arguments, oracle(call), `input of ${call.id} (${call.name})`);
        }
        return j;
    }

    // Streamed, raw bytes: structure, and the calls against the non-streamed ones.
    async function streamedRaw(spec, nonStream, id) {
        t.fake.enqueue(spec);
        const n = spec.content.length;
        const before = t.fake.requests.length;
        const res = await fetch(`${t.origin}/v1/chat/completions`, {
            method: 'POST',
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
            headers: jsonHeaders({ 'x-request-id': id }),
            body: chatBody({ n, stream: true, model: REQ_MODEL }),
        });
        const text = await res.text();
        assert.equal(res.status, 200, text);
        const rec = t.fake.requests[before];
        const px = parseSSE(text);
        assert.ok(!px.unterminated && px.trailing === '', 'the stream ends inside an event');
        const datas = px.events.map((e) => e.data);
        assert.equal(datas.at(-1), '[DONE]', 'the last event is [DONE]');
        const chunks = datas.slice(0, -1).map((d) => JSON.parse(d));
        const up = rec.reply.events.filter((p) => p !== '[DONE]').map((p) => JSON.parse(p));
        for (const c of chunks) {
            assert.equal(c.id, up[0].id);
            assert.equal(c.object, 'chat.completion.chunk');
            assert.equal(c.model, up[0].model);
            assert.equal(c.created, up[0].created);
            assert.ok(!('error' in c), JSON.stringify(c));
        }
        // role and finish chunks, in the upstream's order
        const marks = (list) => list.flatMap((c) => (c.choices ?? []).flatMap((ch) => [ch.delta?.role ? `role:${ch.index}` : null, ch.finish_reason ? `finish:${ch.index}:${ch.finish_reason}` : null].filter(Boolean)));
        assert.deepEqual(marks(chunks), marks(up), 'role / finish_reason chunks in the upstream order');
        const got = collectCalls(chunks);
        const upCalls = collectCalls(up);
        const heldOrder = new Map();
        for (const { call, choice, index } of callsOf(spec)) {
            const g = got.get(`${choice}:${index}`);
            assert.ok(g, `call ${choice}:${index} is missing`);
            assert.equal(g.id, call.id);
            assert.equal(g.type, call.type ?? 'function');
            assert.equal(g.name, call.name);
            const ns = nonStream.choices[choice].message.tool_calls[index];
            const nsInput = ns.type === 'custom' ? ns.custom.input : ns.function.arguments;
            assert.equal(g.input, nsInput, `streamed input of ${call.id} (${call.name}) = the non-streamed rewrite`);
            if (!PROXIED) continue;
            if (KNOWN.has(call.name)) {
                assert.ok(g.frags.length <= 1, `held call ${call.id} came in ${g.frags.length} fragments`);
                if (g.events.length) {
                    const prev = heldOrder.get(choice);
                    if (prev) assert.ok(prev.index < index && prev.event <= g.events[0], `held calls of choice ${choice} out of index order`);
                    heldOrder.set(choice, { index, event: g.events[0] });
                }
            } else {
                assert.deepEqual(g.frags, upCalls.get(`${choice}:${index}`).frags, `fragments of ${call.id}, which astgate does not hold`);
            }
        }
        // text, if any, adds up to what the non-streamed reply holds
        for (let i = 0; i < n; i++) {
            const txt = chunks.flatMap((c) => (c.choices ?? []).filter((ch) => ch.index === i)).map((ch) => ch.delta?.content ?? '').join('');
            assert.equal(txt, nonStream.choices[i].message.content ?? '', `text of choice ${i}`);
        }
        return { chunks, rec, px };
    }

    // Streamed through the SDK: the raw iterator (joined by index) and, for function calls, the
    // ChatCompletionStream helper.
    async function streamedSdk(spec, nonStream) {
        const n = spec.content.length;
        t.fake.enqueue(spec);
        const stream = await client.chat.completions.create({ model: REQ_MODEL, messages: MESSAGES, n, stream: true });
        const chunks = [];
        for await (const c of stream) chunks.push(c);
        const got = collectCalls(chunks);
        for (const { call, choice, index } of callsOf(spec)) {
            const ns = nonStream.choices[choice].message.tool_calls[index];
            assert.equal(got.get(`${choice}:${index}`).input, ns.type === 'custom' ? ns.custom.input : ns.function.arguments, `SDK raw stream: ${call.id}`);
        }
        if (callsOf(spec).some(({ call }) => call.type === 'custom')) return; // the helper knows function calls only
        t.fake.enqueue(spec);
        const runner = client.chat.completions.stream({ model: REQ_MODEL, messages: MESSAGES, n });
        const done = [];
        runner.on('tool_calls.function.arguments.done', (e) => done.push(e));
        const final = await runner.finalChatCompletion();
        for (const { call, choice, index } of callsOf(spec)) {
            const tc = final.choices[choice].message.tool_calls[index];
            const ns = nonStream.choices[choice].message.tool_calls[index];
            assert.equal(tc.id, call.id);
            assert.equal(tc.function.name, call.name);
            assert.equal(tc.function.arguments, ns.function.arguments, `finalChatCompletion(): ${call.id}`);
        }
        for (let i = 0; i < n; i++) assert.equal(final.choices[i].message.content ?? null, nonStream.choices[i].message.content ?? null);
        if (n === 1 && !spec.interleave) {
            // calls sent in turn: the helper's per-call event carries each call's whole arguments
            const calls = spec.tool_calls[0];
            assert.deepEqual(
                done.map((e) => [e.index, e.name, e.arguments]),
                calls.map((c, k) => [k, c.name, nonStream.choices[0].message.tool_calls[k].function.arguments]),
                'tool_calls.function.arguments.done events',
            );
        }
    }

    async function check(what, spec, seeds = [1, 2, 3, 4]) {
        const id = rid(what);
        const nonStream = await nonStreamed(spec, id);
        for (const seed of seeds) {
            const s = { ...spec, seed };
            try {
                await streamedRaw(s, nonStream, `${id}-s${seed}`);
                await streamedSdk(s, nonStream);
            } catch (err) {
                throw annotate(err, `seed ${seed}`);
            }
        }
        return { id, nonStream };
    }

    it('one Write call: the agent is pinned; audit log names tool, call_id, argument, path', async () => {
        const spec = { content: [null], tool_calls: [[CALLS.write]] };
        const { id, nonStream } = await check('write', spec);
        const args = JSON.parse(nonStream.choices[0].message.tool_calls[0].function.arguments);
        if (REWRITES) {
            assert.match(args.content, /model: openai\('gpt-4\.1-nano'\)/);
            assert.equal(args.content, AGENT_TS.replace("openai('gpt-4o')", "openai('gpt-4.1-nano')"));
            const lines = await t.proc.waitRewriteLines(id, 1);
            const l = lines.find((x) => x.tool === 'Write');
            assert.ok(l, `no rewrite line names the tool: ${JSON.stringify(lines)}`);
            assert.equal(l.call_id, 'call_w1');
            assert.equal(l.argument, 'content');
            assert.equal(l.path, AGENT_PATH);
            assert.equal(l.rule, 'mastra-agent-model');
            assert.equal(l.applied, true);
            assert.equal(l.streamed, false);
            const sl = await t.proc.waitRewriteLines(`${id}-s1`, 1);
            assert.ok(sl.some((x) => x.tool === 'Write' && x.call_id === 'call_w1' && x.streamed === true), 'the streamed request logs the call too');
        } else {
            assert.equal(args.content, AGENT_TS);
        }
    });

    it('one Write call through the SDK, not streamed', async () => {
        t.fake.enqueue({ content: [null], tool_calls: [[CALLS.write]], style: 'pretty' });
        const r = await client.chat.completions.create({ model: REQ_MODEL, messages: MESSAGES });
        assert.equal(r.choices[0].finish_reason, 'tool_calls');
        assert.equal(r.choices[0].message.tool_calls[0].function.arguments, oracle(CALLS.write));
    });

    it('Write with Python-style arguments and events (\\u escapes kept in their style)', async () => {
        const spec = { content: [null], tool_calls: [[CALLS.writePy]], style: 'python', eventStyle: 'python' };
        const { nonStream } = await check('write-py', spec);
        const a = nonStream.choices[0].message.tool_calls[0].function.arguments;
        assert.ok(a.includes('\\u00e9') && a.includes('\\ud83d\\ude80'), 'non-ASCII stays escaped in the arguments');
        if (REWRITES) assert.ok(a.includes("openai('gpt-4.1-nano')"), a);
    });

    it('Edit (a fragment that parses) and apply_patch as a JSON function', async () => {
        await check('edit', { content: [null], tool_calls: [[CALLS.edit]] });
        const { nonStream } = await check('patch', { content: [null], tool_calls: [[CALLS.patch]] });
        if (REWRITES) assert.match(JSON.parse(nonStream.choices[0].message.tool_calls[0].function.arguments).input, /openai\/gpt-4\.1-nano/);
    });

    it('apply_patch as a custom tool (free text)', async () => {
        const { nonStream } = await check('custom', { content: [null], tool_calls: [[CALLS.patchCustom]] });
        if (REWRITES) assert.match(nonStream.choices[0].message.tool_calls[0].custom.input, /openai\/gpt-4\.1-nano/);
    });

    it('two parallel calls, in turn and interleaved', async () => {
        const calls = [CALLS.write, CALLS.edit];
        await check('par', { content: [null], tool_calls: [calls] });
        await check('par-il', { content: [null], tool_calls: [calls], interleave: true }, [5, 6, 7, 8, 9, 10]);
    });

    it('three parallel calls with a tool astgate does not know in between, interleaved', async () => {
        const calls = [CALLS.patch, CALLS.unknown, CALLS.writePy];
        await check('three', { content: [null], tool_calls: [calls] });
        await check('three-il', { content: [null], tool_calls: [calls], interleave: true }, [11, 12, 13, 14, 15, 16]);
    });

    it('text plus a call: both rewritten, the text not held back by the call', async () => {
        const { nonStream } = await check('text', { content: [TEXT], tool_calls: [[CALLS.write]] });
        if (REWRITES) assert.match(nonStream.choices[0].message.content, /openai\/gpt-4\.1-nano/);
    });

    it('two choices, each with calls', async () => {
        await check('n2', { content: [null, TEXT], tool_calls: [[CALLS.write, CALLS.unknown], [CALLS.patchCustom]], interleave: true });
    });

    it('a tool astgate does not know: byte for byte, streamed and not', async () => {
        const spec = { content: [null], tool_calls: [[CALLS.unknown]] };
        const id = rid('unknown');
        t.fake.enqueue(spec);
        const before = t.fake.requests.length;
        const res = await fetch(`${t.origin}/v1/chat/completions`, { method: 'POST', headers: jsonHeaders({ 'x-request-id': id }), body: chatBody({ model: REQ_MODEL }) });
        const body = Buffer.from(await res.arrayBuffer());
        assert.ok(body.equals(t.fake.requests[before].reply.body), 'the body is the upstream body');
        for (const seed of [1, 2, 3]) {
            t.fake.enqueue({ ...spec, seed });
            const b2 = t.fake.requests.length;
            const r = await fetch(`${t.origin}/v1/chat/completions`, { method: 'POST', headers: jsonHeaders(), body: chatBody({ stream: true, model: REQ_MODEL }) });
            const px = parseSSE(await r.text());
            assert.deepEqual(px.events.map((e) => e.data), t.fake.requests[b2].reply.events, `seed ${seed}: the events are the upstream's`);
        }
    });

    it('arguments that are not JSON pass through unchanged and are logged', async () => {
        const spec = { content: [null], tool_calls: [[CALLS.notJson]] };
        const { id, nonStream } = await check('notjson', spec);
        assert.equal(nonStream.choices[0].message.tool_calls[0].function.arguments, CALLS.notJson.arguments);
        if (PROXIED) {
            const l = await withTimeout(
                t.proc.waitLine((x) => x.includes(id) && x.includes('tool_call_skipped')),
                5000,
                'the tool_call_skipped line',
            );
            const j = JSON.parse(l);
            assert.equal(j.tool, 'Write');
            assert.equal(j.call_id, 'call_n1');
        }
    });

    describe('the golden corpus as Write calls to notes.md', () => {
        const corpus = loadCorpus();
        // A Markdown file is not a reply: a case without fences holds no code block there.
        const FENCE = /^[ \t]*(```|~~~)/m;
        const wantContent = (c) => (PROXIED && CORE_LANDED && FENCE.test(c.input) ? c.expected : c.input);
        const groups = [];
        for (let i = 0; i < corpus.length; i += 3) groups.push(corpus.slice(i, i + 3));
        groups.forEach((g, k) => {
            it(`${g.map((c) => c.name).join(', ')}`, async () => {
                const calls = g.map((c, j) => ({ id: `call_g${k}_${j}`, name: 'Write', arguments: JSON.stringify({ file_path: 'notes.md', content: c.input }) }));
                const spec = { content: [null], tool_calls: [calls], interleave: k % 2 === 1, style: k % 3 === 2 ? 'python' : 'compact' };
                const nonStream = await nonStreamed(spec, rid('golden'));
                g.forEach((c, j) => assert.equal(JSON.parse(nonStream.choices[0].message.tool_calls[j].function.arguments).content, wantContent(c), c.name));
                const seed = 100 + k;
                await streamedRaw({ ...spec, seed }, nonStream, rid('golden-s'));
                await streamedSdk({ ...spec, seed: seed + 1 }, nonStream);
            });
        });
    });

    describe('the tool golden cases as calls', () => {
        const base = path.join(ROOT, 'tests', 'golden');
        const cases = fs
            .readdirSync(base)
            .sort()
            .filter((name) => fs.existsSync(path.join(base, name, 'tool.txt')))
            .map((name) => {
                const dir = path.join(base, name);
                const [tool, kind = 'args'] = fs.readFileSync(path.join(dir, 'tool.txt'), 'utf8').split('\n').map((s) => s.trim());
                return { name, dir, tool, kind: kind || 'args' };
            })
            .filter((c) => c.kind === 'args' || c.kind === 'text'); // patch-create/update: Responses only
        for (const c of cases) {
            it(c.name, async () => {
                const ext = c.kind === 'text' ? 'txt' : 'json';
                const input = fs.readFileSync(path.join(c.dir, `input.${ext}`), 'utf8');
                const expFile = path.join(c.dir, `expected.${ext}`);
                const expected = REWRITES && fs.existsSync(expFile) ? fs.readFileSync(expFile, 'utf8') : input;
                const call = c.kind === 'text' ? { id: 'call_gt', type: 'custom', name: c.tool, input } : { id: 'call_gt', name: c.tool, arguments: input };
                const spec = { content: [null], tool_calls: [[call]] };
                const nonStream = await nonStreamed(spec, rid('tool-golden'));
                const tc = nonStream.choices[0].message.tool_calls[0];
                assert.equal(c.kind === 'text' ? tc.custom.input : tc.function.arguments, expected);
                await streamedRaw({ ...spec, seed: 3 }, nonStream, rid('tool-golden-s'));
                await streamedSdk({ ...spec, seed: 4 }, nonStream);
            });
        }
    });
});

describe('chat completions: a block rule on a tool call', { skip: NEEDS_PROXY || (!CORE_LANDED && 'the tool-call rewrite is not there yet') }, () => {
    let t;
    before(async () => {
        const mastra = fs.readFileSync(path.join(ROOT, RULES), 'utf8');
        const rules = writeRules(mastra + '\n---\nid: no-eval\nlanguage: TypeScript\nmessage: eval runs arbitrary code\nrule:\n  pattern: eval($X)\nmetadata:\n  astgate:\n    action: block\n');
        t = await openTarget({ rules });
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    const EVAL = { id: 'call_x1', name: 'Write', arguments: JSON.stringify({ file_path: 'src/calc.ts', content: 'export const calc = (s: string) => eval(s);\n' }) };

    it('not streamed: 422 astgate_blocked with the rule id', async () => {
        t.fake.enqueue({ content: [null], tool_calls: [[EVAL]] });
        const res = await fetch(`${t.origin}/v1/chat/completions`, { method: 'POST', headers: jsonHeaders(), body: chatBody({ model: REQ_MODEL }) });
        const j = await res.json();
        assert.equal(res.status, 422);
        assert.equal(j.error.type, 'astgate_blocked');
        assert.equal(j.error.code, 'no-eval');
    });

    it('streamed: the call is replaced by the error event, which ends the stream; the call before it is kept', async () => {
        for (const seed of [1, 2, 3]) {
            t.fake.enqueue({ content: ['Writing two files.\n'], tool_calls: [[CALLS.write, EVAL]], seed, interleave: seed === 3 });
            const res = await fetch(`${t.origin}/v1/chat/completions`, { method: 'POST', headers: jsonHeaders(), body: chatBody({ stream: true, model: REQ_MODEL }) });
            assert.equal(res.status, 200);
            const px = parseSSE(await res.text()); // resolves: the stream ends cleanly
            assert.ok(!px.unterminated && px.trailing === '');
            const last = JSON.parse(px.events.at(-1).data);
            assert.equal(last.error?.code, 'no-eval', `seed ${seed}: the last event is the error`);
            assert.equal(last.error.type, 'astgate_blocked');
            const chunks = px.events.slice(0, -1).map((e) => JSON.parse(e.data));
            assert.ok(!chunks.some((c) => c.choices?.some((ch) => ch.finish_reason)), 'no finish chunk after a block');
            const calls = collectCalls(chunks);
            assert.equal(calls.get('0:1')?.input ?? '', '', 'nothing of the blocked call');
            assert.equal(calls.get('0:0').input, oracle(CALLS.write), 'the call before it went out whole');
            assert.equal(chunks.map((c) => c.choices?.[0]?.delta?.content ?? '').join(''), 'Writing two files.\n');
        }
        t.fake.enqueue({ content: [null], tool_calls: [[EVAL]], seed: 4 });
        const stream = await t.client().chat.completions.create({ model: REQ_MODEL, messages: MESSAGES, stream: true });
        await assert.rejects(
            (async () => {
                for await (const c of stream) void c;
            })(),
            (err) => err.error?.code === 'no-eval' || err.code === 'no-eval',
        );
    });
});
