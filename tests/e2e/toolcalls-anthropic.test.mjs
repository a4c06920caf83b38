// POST /v1/messages with code in tool calls (issue 13), with @anthropic-ai/sdk against the fake of
// fake-anthropic.mjs. The tools: Claude Code's Write / Edit / MultiEdit, Anthropic's text editor
// (str_replace_based_edit_tool create / str_replace / insert), Mastra's workspace write; unknown
// tools and inputs that are not JSON. Shapes: one call, two parallel calls (interleaved or not),
// text plus a call. Not streamed: the body is the upstream's with only the tool_use inputs changed
// (each a JSON object, equal to `astgate rewrite --tool` once the core has landed). Streamed, with
// partial_json cut inside escapes and next to multi-byte characters, every inner style (JS, Python,
// spaces) and ensure_ascii events: the raw events (every upstream event in order, but the held
// input_json_delta events of known tools, which come back before their block's stop as they came
// or as the rewritten input, never cut inside an escape or a character), and the SDK's
// messages.stream().finalMessage(), whose inputs and joined partial_json equal the non-streamed
// rewrite. Also: the audit log names tool, call_id and argument; a block rule; the hold limit
// (limits.max_held); the golden corpus as Write calls to notes.md, streamed and not.
//
// Until ag_toolcode_rewrite lands (it passes every call through), the oracle `astgate rewrite
// --tool` does not exist: CORE is false, the checks that need a rewrite are skipped, and every
// streamed result is still checked against the non-streamed one.

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import Anthropic from '@anthropic-ai/sdk';
import { FakeApis } from './fake-responses.mjs';
import { callIndexes, callJson, textIndexes } from './fake-anthropic.mjs';
import { pyString } from './fake-upstream.mjs';
import {
    API_KEY,
    BIN,
    PROXIED,
    NEEDS_PROXY,
    ROOT,
    RULES,
    Astgate,
    loadCorpus,
    want,
    tmpDir,
    writeConfig,
    writeRules,
    parseSSE,
    annotate,
    withTimeout,
    REQUEST_TIMEOUT_MS,
} from './helpers.mjs';

const corpus = loadCorpus();
const REQ_MODEL = 'claude-haiku-4-5';
const MESSAGES = [{ role: 'user', content: 'Write me a Mastra agent, please.' }];

// The presets (src/api/tools.c): their calls are held when streamed.
const KNOWN = new Set([
    'Write',
    'Edit',
    'MultiEdit',
    'write_to_file',
    'replace_in_file',
    'str_replace_editor',
    'str_replace_based_edit_tool',
    'apply_patch',
    'mastra_workspace_write_file',
    'mastra_workspace_edit_file',
    'mastra_workspace_apply_patch',
    'workspace_write_file',
    'workspace_edit_file',
]);

// The golden cases of tool calls whose input is JSON arguments (tool.txt: the tool, no input
// kind or "args"): {name, tool, json, expected} (expected: input.json when there is no
// expected.json; a final newline of the files dropped).
function loadToolCases() {
    const base = path.join(ROOT, 'tests', 'golden');
    const out = [];
    for (const name of fs.readdirSync(base).sort()) {
        const dir = path.join(base, name);
        const at = (f) => path.join(dir, f);
        if (!fs.existsSync(at('tool.txt')) || !fs.existsSync(at('input.json')) || fs.existsSync(at('rules.yaml'))) continue;
        const [tool, kind = ''] = fs.readFileSync(at('tool.txt'), 'utf8').split('\n');
        if (kind.trim() !== '' && kind.trim() !== 'args') continue;
        const json = fs.readFileSync(at('input.json'), 'utf8').replace(/\n$/, '');
        const expected = fs.existsSync(at('expected.json')) ? fs.readFileSync(at('expected.json'), 'utf8').replace(/\n$/, '') : json;
        out.push({ name, tool: tool.trim(), json, expected });
    }
    return out;
}
const toolCases = loadToolCases();

/* ------------------------------------------------------------------------------------------ */
/* the code and the calls                                                                       */

// A whole file with every escape a JSON encoder writes: quotes, backslashes, tab, newline,
// non-ASCII (é, —) and a character outside the BMP (🚀, a surrogate pair in \u form).
const AGENT_TS = [
    "import { Agent } from '@mastra/core/agent';",
    "import { openai } from '@ai-sdk/openai';",
    '',
    '// Réponse en français — "quoted" 🚀',
    'export const weatherAgent = new Agent({',
    '  name: "Weather \\"Agent\\"",',
    '  instructions: `Answer\twith a tab; a path C:\\\\temp\\\\x`,',
    "  model: openai('gpt-4o'),",
    '});',
    '',
].join('\n');
// A fragment that parses on its own, and one that does not.
const FRAG_OK = "export const helper = new Agent({ name: 'é', instructions: \"say \\\"hi\\\"\", model: openai('gpt-4o') });\n";
const FRAG_BAD = "  model: openai('gpt-4o'),\n  tools: {\n";
const EVAL_TS = "export function calc(userInput: string) {\n  return eval(userInput);\n}\n";

let ids = 0;
function call(name, input) {
    ids++;
    return { id: `toolu_01${String(ids).padStart(4, '0')}A09q90qw90lq917835`, name, input };
}

// Every case: a fresh call each time (ids differ).
const CASES = {
    Write: () => call('Write', { file_path: 'src/mastra/agents/weather.ts', content: AGENT_TS }),
    Edit: () => call('Edit', { file_path: 'src/mastra/agents/weather.ts', old_string: "model: openai('gpt-4o-mini')", new_string: FRAG_OK }),
    EditBad: () => call('Edit', { file_path: 'src/mastra/agents/weather.ts', old_string: 'tools: {', new_string: FRAG_BAD, replace_all: false }),
    MultiEdit: () =>
        call('MultiEdit', {
            file_path: 'src/mastra/agents/weather.ts',
            edits: [
                { old_string: 'a', new_string: FRAG_OK },
                { old_string: 'b', new_string: FRAG_BAD, replace_all: true },
            ],
        }),
    create: () => call('str_replace_based_edit_tool', { command: 'create', path: 'src/agents/a.ts', file_text: AGENT_TS }),
    str_replace: () => call('str_replace_based_edit_tool', { command: 'str_replace', path: 'src/agents/a.ts', old_str: "openai('gpt-4o-mini')", new_str: FRAG_OK }),
    insert: () => call('str_replace_based_edit_tool', { command: 'insert', path: 'src/agents/a.ts', insert_line: 4, new_str: FRAG_OK }),
    insert_text: () => call('str_replace_based_edit_tool', { command: 'insert', path: 'src/agents/a.ts', insert_line: 4, insert_text: FRAG_OK }),
    mastra: () => call('mastra_workspace_write_file', { path: 'src/mastra/agents/b.ts', content: AGENT_TS, overwrite: true }),
    text_file: () => call('Write', { file_path: 'notes.txt', content: "model: openai('gpt-4o')\n" }),
    unknown: () => call('write_file', { path: 'src/agents/c.ts', content: AGENT_TS }),
    bash: () => call('Bash', { command: `cat > a.ts <<'EOF'\n${AGENT_TS}EOF`, description: 'écrit "a.ts"' }),
};
const CASE_NAMES = Object.keys(CASES);

// Layouts of the streamed replies: the inner (input) style, events in ensure_ascii, interleaving.
const STREAM_LAYOUTS = [{}, { inner: 'python', pings: true }, { inner: 'spaced', spaces: true }, { ascii: true }, { interleave: true }, { interleave: true, splitPairs: true, inner: 'python' }];

/* ------------------------------------------------------------------------------------------ */
/* the oracle: `astgate rewrite --tool`                                                         */

const oracleCache = new Map();
// What `astgate rewrite --tool NAME` makes of an input's JSON text; null when it cannot say (the
// command does not exist yet, or refuses the input).
function oracle(name, json) {
    if (!PROXIED) return json;
    const key = name + '\0' + json;
    if (oracleCache.has(key)) return oracleCache.get(key);
    let out = null;
    try {
        const file = path.join(tmpDir(), 'input.json');
        fs.writeFileSync(file, json);
        out = execFileSync(BIN, ['rewrite', '--tool', name, '--rules', RULES, file], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
        out = null;
    }
    oracleCache.set(key, out);
    return out;
}

// Whether the core rewrite is there: a Write of a Mastra agent comes back pinned.
const CORE = PROXIED && (oracle('Write', JSON.stringify({ file_path: 'src/a.ts', content: AGENT_TS })) ?? '').includes("openai('gpt-4.1-nano')");
const NEEDS_CORE = NEEDS_PROXY || (CORE ? false : 'ag_toolcode_rewrite is not there yet (astgate rewrite --tool does not pin a Mastra agent)');

/* ------------------------------------------------------------------------------------------ */
/* the target                                                                                   */

async function openFake({ rules = RULES, config = null } = {}) {
    const fake = await FakeApis.start();
    let proc = null;
    try {
        if (PROXIED) proc = await Astgate.start({ upstream: fake.url, rules, config: config ? config(fake) : null });
    } catch (err) {
        await fake.close();
        throw err;
    }
    const origin = proc ? proc.origin : fake.url;
    return {
        fake,
        proc,
        origin,
        client: new Anthropic({ baseURL: origin, apiKey: API_KEY, maxRetries: 0, timeout: REQUEST_TIMEOUT_MS }),
        async close() {
            try {
                if (proc) await proc.stop();
            } finally {
                await fake.close();
            }
        },
    };
}

function headers(extra = {}) {
    return { 'content-type': 'application/json', 'x-api-key': API_KEY, 'anthropic-version': '2023-06-01', ...extra };
}

async function post(t, spec, { stream, rid } = {}) {
    const before = t.fake.requests.length;
    t.fake.enqueue('/v1/messages', spec);
    const res = await fetch(`${t.origin}/v1/messages`, {
        method: 'POST',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        headers: headers(rid ? { 'x-request-id': rid } : {}),
        body: JSON.stringify({ model: REQ_MODEL, max_tokens: 4096, messages: MESSAGES, ...(stream ? { stream: true } : {}) }),
    });
    const body = await res.text();
    return { res, body, rec: t.fake.requests[before] };
}

/* ------------------------------------------------------------------------------------------ */
/* checks                                                                                       */

// End (exclusive) of the JSON value (object or array) that starts at s[p].
function jsonValueEnd(s, p) {
    assert.ok(s[p] === '{' || s[p] === '[', `a JSON object at ${p}: ${JSON.stringify(s.slice(p, p + 40))}`);
    let depth = 0;
    for (let i = p; i < s.length; i++) {
        const c = s[i];
        if (c === '"') {
            for (i++; s[i] !== '"'; i++) if (s[i] === '\\') i++;
        } else if (c === '{' || c === '[') depth++;
        else if (c === '}' || c === ']') {
            if (--depth === 0) return i + 1;
        }
    }
    throw new Error('unterminated JSON value');
}

// The string literal of text as the fake writes it in this layout.
function literal(text, layout) {
    return layout.ascii ? pyString(text) : JSON.stringify(text);
}

// Not streamed: the proxy's body must be the upstream's with only the tool_use inputs (raws[i]
// at their places) and the text literals changed. Returns the inputs as the proxy wrote them.
function bodyInputs(upBody, pxBody, raws, { texts = [], wants = [], layout = {} } = {}) {
    let px = pxBody;
    texts.forEach((x, i) => (px = px.split(literal(wants[i], layout)).join(literal(x, layout))));
    const segs = [];
    let pos = 0;
    for (const r of raws) {
        const at = upBody.indexOf(r, pos);
        assert.ok(at >= 0, 'the fake wrote the input as callJson says');
        segs.push(upBody.slice(pos, at));
        pos = at + r.length;
    }
    segs.push(upBody.slice(pos));
    const out = [];
    let p = 0;
    for (let i = 0; i < raws.length; i++) {
        assert.equal(px.slice(p, p + segs[i].length), segs[i], `the bytes before input ${i} are the upstream's`);
        p += segs[i].length;
        const end = jsonValueEnd(px, p);
        out.push(px.slice(p, end));
        p = end;
    }
    assert.equal(px.slice(p), segs.at(-1), 'the bytes after the last input are the upstream\'s');
    return out;
}

// Positions of a JSON text (a JS string) where a cut splits an escape, a \u surrogate pair or a
// UTF-16 surrogate pair.
function unsafeCuts(text) {
    const bad = new Set();
    let inString = false;
    for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c >= 0xd800 && c <= 0xdbff) bad.add(i + 1);
        if (!inString) {
            if (text[i] === '"') inString = true;
            continue;
        }
        if (text[i] === '"') inString = false;
        else if (text[i] === '\\') {
            let n = text[i + 1] === 'u' ? 6 : 2;
            if (n === 6 && /^[dD][89abAB]/.test(text.slice(i + 2, i + 4)) && text.slice(i + 6, i + 8) === '\\u') n = 12;
            for (let k = 1; k < n; k++) bad.add(i + k);
            i += n - 1;
        }
    }
    return bad;
}

// Streamed: checks the proxy's events against the upstream's.
//   texts: {index: wanted text}; calls: {index: {name, json: the wanted input text}}
// Returns {joined: {index: partial_json joined}, events: the parsed events}.
function assertToolStream(upEvents, body, { texts = {}, calls = {} }) {
    const px = parseSSE(body);
    assert.ok(!px.unterminated && px.trailing === '', `the stream ends inside an event: ${JSON.stringify(px.trailing)}`);
    const held = (d) => d.type === 'content_block_delta' && d.delta?.type === 'input_json_delta' && calls[d.index] && KNOWN.has(calls[d.index].name);
    const kept = upEvents.filter((e) => !held(e.data));
    const upDeltas = {}; // index -> the upstream's raw payloads of its held deltas
    for (const e of upEvents) if (held(e.data)) (upDeltas[e.data.index] ??= []).push(e.raw);
    const joined = {};
    const pxDeltas = {};
    const textGot = {};
    const started = new Set();
    const stopped = new Set();
    let u = 0;
    const events = px.events.map((ev, i) => {
        const d = JSON.parse(ev.data);
        const where = `event ${i} (${d.type} ${d.index ?? ''})`;
        assert.equal(ev.event, d.type, `${where}: the event line names the type`);
        if (d.type === 'content_block_start') started.add(d.index);
        const isText = d.index in texts;
        if (d.index in texts && !stopped.has(d.index)) {
            const piece = d.type === 'content_block_delta' && d.delta.type === 'text_delta' ? d.delta.text : d.type === 'content_block_start' ? d.content_block.text : null;
            if (piece !== null) textGot[d.index] = (textGot[d.index] ?? '') + piece;
        }
        if (d.type === 'content_block_stop') {
            stopped.add(d.index);
            if (isText) assert.equal(textGot[d.index] ?? '', texts[d.index], `${where}: text block complete at its stop`);
            if (d.index in calls) assert.equal(joined[d.index] ?? '', calls[d.index].json, `${where}: the call's input is complete at its stop`);
        }
        if (d.type === 'content_block_delta' && d.delta.type === 'input_json_delta') {
            assert.ok(started.has(d.index) && !stopped.has(d.index), `${where}: a delta inside its block`);
            joined[d.index] = (joined[d.index] ?? '') + d.delta.partial_json;
            (pxDeltas[d.index] ??= []).push({ raw: ev.data, piece: d.delta.partial_json });
        }
        const up = kept[u];
        if (up && ev.data === up.raw) {
            u++;
            return d;
        }
        if (up && isText && up.data.index === d.index && up.data.type === d.type && (d.type === 'content_block_start' || d.type === 'content_block_delta')) {
            // a text event whose text changed
            const a = structuredClone(d);
            const b = structuredClone(up.data);
            for (const x of [a, b]) {
                if (x.delta) delete x.delta.text;
                if (x.content_block) delete x.content_block.text;
            }
            if (JSON.stringify(a) === JSON.stringify(b)) {
                u++;
                return d;
            }
        }
        const added = d.type === 'content_block_delta' && ((isText && d.delta.type === 'text_delta') || (held(d) && d.delta.type === 'input_json_delta'));
        assert.ok(added, `${where} is neither the upstream's next event (${up?.raw?.slice(0, 120)}) nor a delta astgate writes: ${ev.data.slice(0, 200)}`);
        return d;
    });
    assert.equal(u, kept.length, 'every upstream event but the held deltas reached the client, in order');
    for (const [index, want] of Object.entries(texts)) assert.equal(textGot[index] ?? '', want, `text block ${index}`);
    for (const [index, c] of Object.entries(calls)) {
        const ups = upDeltas[index] ?? [];
        const got = pxDeltas[index] ?? [];
        assert.equal(joined[index] ?? '', c.json, `block ${index} (${c.name}): the joined partial_json`);
        assert.ok(stopped.has(Number(index)), `block ${index} stopped`);
        if (!KNOWN.has(c.name)) continue;
        const upJoined = ups.map((r) => JSON.parse(r).delta.partial_json).join('');
        if (upJoined === c.json) {
            assert.deepEqual(
                got.map((x) => x.raw),
                ups,
                `block ${index} (${c.name}): unchanged, its events go out as they came`,
            );
            continue;
        }
        const bad = unsafeCuts(c.json);
        let at = 0;
        for (const { raw, piece } of got) {
            const d = JSON.parse(raw);
            assert.deepEqual(Object.keys(d), ['type', 'index', 'delta']);
            assert.deepEqual(Object.keys(d.delta), ['type', 'partial_json']);
            assert.ok(piece.length > 0, 'no empty delta');
            if (at > 0) assert.ok(!bad.has(at), `block ${index}: a cut at ${at} splits an escape or a character: ${JSON.stringify(c.json.slice(at - 8, at + 8))}`);
            at += piece.length;
        }
    }
    return { joined, events };
}

// The SDK: messages.stream().finalMessage() and the joined partial_json of each tool_use block.
async function sdkFinal(t, spec) {
    t.fake.enqueue('/v1/messages', spec);
    const stream = t.client.messages.stream({ model: REQ_MODEL, max_tokens: 4096, messages: MESSAGES });
    const joined = {};
    stream.on('streamEvent', (ev) => {
        if (ev.type === 'content_block_delta' && ev.delta.type === 'input_json_delta') joined[ev.index] = (joined[ev.index] ?? '') + ev.delta.partial_json;
    });
    const final = await stream.finalMessage();
    return { final, joined };
}

/* ------------------------------------------------------------------------------------------ */
/* one scenario: non-streamed, then streamed raw and through the SDK                            */

// texts: the text blocks' texts (wants: what they become); calls: the calls. Returns the inputs
// as the proxy writes them, non-streamed (the reference for the streamed runs), of the last layout.
async function scenario(t, { texts = [], wants = [], calls, layouts = STREAM_LAYOUTS, seeds = [1], sdk = true }) {
    let last = null;
    for (const layout0 of layouts) {
        const layout = { ...layout0, calls };
        const raws = calls.map((c) => callJson(c, layout));
        // not streamed
        const { res, body, rec } = await post(t, { texts, layout });
        assert.equal(res.status, 200, body);
        assert.equal(res.headers.get('content-length'), String(Buffer.byteLength(body)));
        const xs = bodyInputs(rec.reply.body.toString('utf8'), body, raws, { texts, wants, layout });
        last = xs;
        const m = JSON.parse(body);
        const cidx = callIndexes(texts, layout);
        calls.forEach((c, i) => {
            const b = m.content[cidx[i]];
            assert.equal(b.type, 'tool_use');
            assert.equal(b.id, c.id, 'id kept');
            assert.equal(b.name, c.name, 'name kept');
            assert.deepEqual(b.input, JSON.parse(xs[i]));
            if (!KNOWN.has(c.name)) assert.equal(xs[i], raws[i], `${c.name} is not a tool we know: byte for byte`);
            const o = CORE ? oracle(c.name, raws[i]) : null;
            if (o !== null) assert.equal(xs[i], o, `${c.name}: the non-streamed input is what astgate rewrite --tool makes of it`);
            if (!PROXIED) assert.equal(xs[i], raws[i]);
        });
        const tidx = textIndexes(texts, layout);
        texts.forEach((_, i) => assert.equal(m.content[tidx[i]].text, wants[i]));
        // streamed, raw
        const wantTexts = Object.fromEntries(tidx.map((ix, i) => [ix, wants[i]]));
        const wantCalls = Object.fromEntries(cidx.map((ix, i) => [ix, { name: calls[i].name, json: xs[i] }]));
        for (const seed of seeds) {
            try {
                const s = await post(t, { texts, layout, seed }, { stream: true });
                assert.equal(s.res.status, 200, s.body);
                const { events } = assertToolStream(s.rec.reply.events, s.body, { texts: wantTexts, calls: wantCalls });
                for (const [ix, c] of Object.entries(wantCalls)) {
                    const st = events.find((d) => d.type === 'content_block_start' && d.index === Number(ix));
                    assert.deepEqual(st.content_block, { type: 'tool_use', id: calls[cidx.indexOf(Number(ix))].id, name: c.name, input: {} }, 'content_block_start kept');
                }
                assert.equal(events.at(-1).type, 'message_stop');
                assert.equal(events.at(-2).delta.stop_reason, 'tool_use');
            } catch (err) {
                throw annotate(err, `seed ${seed} layout ${JSON.stringify(layout0)}`);
            }
        }
        // the SDK's accumulator
        if (!sdk) continue;
        const { final, joined } = await sdkFinal(t, { texts, layout, seed: seeds[0] + 100 });
        assert.equal(final.stop_reason, 'tool_use');
        calls.forEach((c, i) => {
            const b = final.content[cidx[i]];
            assert.equal(b.type, 'tool_use');
            assert.equal(b.id, c.id);
            assert.equal(b.name, c.name);
            assert.deepEqual(b.input, JSON.parse(xs[i]), `finalMessage(): ${c.name}'s input is the non-streamed rewrite`);
            assert.equal(joined[cidx[i]], xs[i], `the joined partial_json of ${c.name} is the non-streamed input, byte for byte`);
        });
        texts.forEach((_, i) => assert.equal(final.content[tidx[i]].text, wants[i]));
    }
    return last;
}

/* ------------------------------------------------------------------------------------------ */

describe('anthropic messages API, code in tool calls', () => {
    let t;
    before(async () => {
        t = await openFake();
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    CASE_NAMES.forEach((name, k) => {
        it(`one call: ${name}`, async () => {
            await scenario(t, { calls: [CASES[name]()], seeds: [10 * k + 1, 10 * k + 2] });
        });
    });

    CASE_NAMES.forEach((name, k) => {
        const other = CASE_NAMES[(k + 3) % CASE_NAMES.length];
        it(`two parallel calls: ${name} + ${other}`, async () => {
            await scenario(t, { calls: [CASES[name](), CASES[other]()], seeds: [200 + k, 300 + k] });
        });
    });

    CASE_NAMES.forEach((name, k) => {
        const c = corpus.filter((x) => x.input !== x.expected)[k % 5];
        it(`text plus a call: ${c.name} + ${name}`, async () => {
            await scenario(t, {
                texts: [c.input],
                wants: [want(c)],
                calls: [CASES[name]()],
                layouts: STREAM_LAYOUTS.filter((l) => !l.ascii),
                seeds: [400 + k],
            });
        });
    });

    it('text, three calls (known, unknown, known) interleaved with the text', async () => {
        const c = corpus.find((x) => x.input !== x.expected);
        for (const seed of [1, 2, 3, 4, 5, 6]) {
            await scenario(t, {
                texts: [c.input],
                wants: [want(c)],
                calls: [CASES.Write(), CASES.bash(), CASES.MultiEdit()],
                layouts: [{ interleave: true, pings: true }],
                seeds: [500 + seed],
                sdk: seed === 1,
            });
        }
    });

    it('a Write of a Mastra agent comes out pinned to gpt-4.1-nano, streamed and not', { skip: NEEDS_CORE }, async () => {
        for (const mk of [CASES.Write, CASES.create, CASES.mastra]) {
            const c = mk();
            const layout = { calls: [c] };
            t.fake.enqueue('/v1/messages', { texts: [], layout });
            const m = await t.client.messages.create({ model: REQ_MODEL, max_tokens: 4096, messages: MESSAGES });
            const code = m.content[0].input.content ?? m.content[0].input.file_text;
            assert.ok(code.includes("model: openai('gpt-4.1-nano')"), code);
            assert.ok(!code.includes("openai('gpt-4o')"), code);
            assert.equal(code, AGENT_TS.replace("openai('gpt-4o')", "openai('gpt-4.1-nano')"), 'only the model changed');
            const { final } = await sdkFinal(t, { texts: [], layout, seed: 7 });
            assert.deepEqual(final.content[0].input, m.content[0].input);
        }
    });

    it('inputs that are not JSON pass through byte for byte (a slip, a max_tokens cut)', async () => {
        const slips = [
            { id: 'toolu_01slip', name: 'Write', json: `{"file_path": "src/a.ts", "content": ${JSON.stringify(AGENT_TS)}}}` },
            { id: 'toolu_01cut', name: 'Write', json: `{"file_path": "src/a.ts", "content": ${JSON.stringify(AGENT_TS).slice(0, 200)}` },
            { id: 'toolu_01bare', name: 'Edit', json: `{"file_path": src/a.ts, "new_string": "model: openai('gpt-4o')"}` },
        ];
        for (const [k, c] of slips.entries()) {
            for (const layout of [{}, { interleave: true, inner: 'python' }]) {
                const calls = [c, CASES.Write()];
                const lay = { ...layout, calls };
                // the well-formed call beside it is the non-streamed rewrite of itself
                const ref = await post(t, { texts: [], layout: { ...layout, calls: [calls[1]] } });
                const x1 = bodyInputs(ref.rec.reply.body.toString('utf8'), ref.body, [callJson(calls[1], lay)])[0];
                const s = await post(t, { texts: [], layout: lay, seed: 600 + k }, { stream: true, rid: `e2e-tool-slip-${k}-${layout.interleave ? 1 : 0}` });
                assertToolStream(s.rec.reply.events, s.body, {
                    calls: {
                        0: { name: c.name, json: c.json },
                        1: { name: calls[1].name, json: x1 },
                    },
                });
                if (CORE) {
                    const line = await withTimeout(
                        t.proc.waitLine((l) => l.includes(`e2e-tool-slip-${k}-${layout.interleave ? 1 : 0}`) && l.includes('tool_call_skipped')),
                        5000,
                        'the log line of the call passed through',
                    );
                    const j = JSON.parse(line);
                    assert.equal(j.tool, c.name);
                    assert.equal(j.call_id, c.id);
                }
            }
        }
    });

    it('the audit log names the tool, the call id and the argument', { skip: NEEDS_PROXY }, async () => {
        const calls = [CASES.Write(), CASES.MultiEdit(), CASES.str_replace()];
        for (const stream of [false, true]) {
            const rid = `e2e-tool-audit-${stream ? 's' : 'n'}`;
            const layout = { calls };
            const r = await post(t, { texts: [], layout, seed: 3 }, { stream, rid });
            assert.equal(r.res.status, 200);
            const raws = calls.map((c) => callJson(c, layout));
            const xs = stream ? null : bodyInputs(r.rec.reply.body.toString('utf8'), r.body, raws);
            if (!CORE && (stream || xs.every((x, i) => x === raws[i]))) continue; // nothing rewritten, nothing logged
            const n = CORE ? 3 : 1;
            await t.proc.waitRewriteLines(rid, n);
            const lines = t.proc.lines
                .filter((l) => l.includes(rid))
                .map((l) => JSON.parse(l))
                .filter((l) => l.request_id === rid && 'rule' in l);
            assert.ok(lines.length >= n);
            for (const l of lines) {
                const i = calls.findIndex((c) => c.id === l.call_id);
                assert.ok(i >= 0, `call_id ${l.call_id} is one of the calls`);
                assert.equal(l.tool, calls[i].name);
                assert.equal(l.choice, i, 'the content block index');
                assert.equal(l.streamed, stream);
                assert.equal(l.route, '/v1/messages');
                assert.ok(['content', 'edits[0].new_string', 'edits[1].new_string', 'new_str'].includes(l.argument), `argument ${l.argument}`);
            }
            if (CORE) {
                const w = lines.find((l) => l.tool === 'Write');
                assert.equal(w.argument, 'content');
                assert.equal(w.rule, 'mastra-agent-model');
                assert.equal(w.path, 'src/mastra/agents/weather.ts');
                assert.ok(lines.some((l) => l.tool === 'MultiEdit' && l.argument === 'edits[0].new_string'));
            }
        }
    });

    toolCases.forEach((g, k) => {
        it(`golden tool case as a tool_use call: ${g.name}`, async () => {
            let valid = true;
            try {
                JSON.parse(g.json);
            } catch {
                valid = false;
            }
            const c = { id: `toolu_01golden${k}`, name: g.tool, json: g.json };
            const want = CORE ? g.expected : null; // without the core: whatever the proxy does, streamed = not streamed
            if (valid) {
                const [x] = await scenario(t, { calls: [c], layouts: [{}, { interleave: true, ascii: true }], seeds: [1000 + k] });
                if (want !== null || !PROXIED) assert.equal(x, PROXIED ? want : g.json, 'the input is expected.json');
                // beside a tool astgate does not know, interleaved
                await scenario(t, { calls: [CASES.bash(), c], layouts: [{ interleave: true }], seeds: [1100 + k], sdk: false });
                return;
            }
            // not JSON: streamed only (a body cannot carry it), byte for byte
            for (const seed of [1, 2, 3]) {
                const s = await post(t, { texts: [], layout: { calls: [c], interleave: true }, seed: 1200 + seed }, { stream: true });
                assertToolStream(s.rec.reply.events, s.body, { calls: { 0: { name: c.name, json: g.json } } });
            }
        });
    });

    corpus.forEach((c, k) => {
        it(`golden corpus as a Write to notes.md: ${c.name}`, async () => {
            const w = call('Write', { file_path: 'notes.md', content: c.input });
            const layout = [{}, { inner: 'python' }, { interleave: true, ascii: true }][k % 3];
            // not streamed (= astgate rewrite --tool), streamed, finalMessage(): the same input
            const [x] = await scenario(t, { calls: [w], layouts: [layout], seeds: [700 + k] });
            // a Markdown file's code is in its fences: bare code (a reply the text path reads as
            // code with `bare: true`) is prose there, left as it is
            const fenced = /^[ \t]*(```|~~~)/m.test(c.input);
            if (CORE || !PROXIED) assert.equal(JSON.parse(x).content, fenced ? want(c) : c.input, 'the content is the expected text');
        });
    });
});

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

describe('anthropic messages API, code in tool calls: a block rule', { skip: NEEDS_PROXY }, () => {
    let t;
    before(async () => {
        const rules = writeRules(fs.readFileSync(path.join(ROOT, RULES), 'utf8') + '\n---\n' + BLOCK_RULE);
        t = await openFake({ rules });
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    it('not streamed: 422; streamed: the call never reaches the client, an error event ends the stream', async () => {
        const bad = call('Write', { file_path: 'src/calc.ts', content: EVAL_TS });
        for (const [k, calls] of [[bad], [CASES.Write(), bad], [CASES.bash(), bad, CASES.Edit()]].entries()) {
            const layout = { calls, interleave: k === 2 };
            const n = await post(t, { texts: ['Here it is.'], layout });
            if (CORE) assert.equal(n.res.status, 422, n.body);
            const blocked = n.res.status === 422;
            if (blocked) {
                const e = JSON.parse(n.body);
                assert.equal(e.type, 'error');
                assert.equal(e.error.type, 'astgate_blocked');
                assert.match(e.error.message, /eval runs arbitrary code/);
                assert.match(n.body, /no-eval/);
            }
            for (const seed of [1, 2, 3]) {
                const s = await post(t, { texts: ['Here it is.'], layout, seed: 900 + 10 * k + seed }, { stream: true });
                assert.equal(s.res.status, 200);
                const px = parseSSE(s.body);
                assert.equal(px.trailing, '');
                const last = px.events.at(-1);
                if (!blocked) {
                    assert.equal(last.event, 'message_stop');
                    continue;
                }
                assert.equal(last.event, 'error', 'the error event comes last');
                const err = JSON.parse(last.data);
                assert.equal(err.error.type, 'astgate_blocked');
                assert.match(err.error.message, /no-eval/);
                assert.ok(!s.body.includes('eval(userInput)'), 'the blocked code reached the client');
                px.events.slice(0, -1).forEach((ev) => assert.equal(ev.event, JSON.parse(ev.data).type));
            }
            if (!blocked) continue;
            t.fake.enqueue('/v1/messages', { texts: ['Here it is.'], layout, seed: 990 + k });
            await assert.rejects(t.client.messages.stream({ model: REQ_MODEL, max_tokens: 4096, messages: MESSAGES }).finalMessage(), (err) => {
                assert.ok(err instanceof Anthropic.APIError, String(err));
                assert.equal(err.type, 'astgate_blocked');
                return true;
            });
        }
    });
});

describe('anthropic messages API, code in tool calls: the hold limit', { skip: NEEDS_PROXY }, () => {
    let t;
    const MAX_HELD = 4096;
    before(async () => {
        t = await openFake({
            config: (fake) => writeConfig({ listen: '127.0.0.1:0', upstream: fake.url, rules: [path.join(ROOT, RULES)], limits: { max_held: MAX_HELD } }),
        });
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    it('a call longer than limits.max_held goes out as it came, logged; a short one is still held', async () => {
        const big = call('Write', { file_path: 'src/big.ts', content: AGENT_TS + '// padding\n'.repeat(MAX_HELD / 8) });
        const small = CASES.Edit();
        const layout = { calls: [big, small], interleave: true };
        const ref = await post(t, { texts: [], layout: { calls: [small] } });
        const xSmall = bodyInputs(ref.rec.reply.body.toString('utf8'), ref.body, [callJson(small, layout)])[0];
        for (const seed of [1, 2]) {
            const rid = `e2e-tool-maxheld-${seed}`;
            const s = await post(t, { texts: [], layout, seed }, { stream: true, rid });
            const r = assertToolStream(s.rec.reply.events, s.body, {
                calls: { 0: { name: 'Write', json: callJson(big, layout) }, 1: { name: 'Edit', json: xSmall } },
            });
            assert.equal(r.joined[0], callJson(big, layout));
            const line = await withTimeout(t.proc.waitLine((l) => l.includes(rid) && l.includes('tool_call_skipped')), 5000, 'the log line of the released call');
            const j = JSON.parse(line);
            assert.equal(j.tool, 'Write');
            assert.equal(j.call_id, big.id);
            assert.match(j.reason, /max_held/);
        }
    });
});
