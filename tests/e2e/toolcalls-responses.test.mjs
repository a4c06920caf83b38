// POST /v1/responses with code in tool calls (issue 13), against the fake of fake-responses.mjs
// with the openai SDK: function_call items (arguments, escaped twice), custom_tool_call items
// (input) and native apply_patch_call items (operation.diff, create_file and update_file), not
// streamed and streamed. Streamed, the deltas of a call astgate knows are held until the call is
// complete and go out as one delta with the rewritten (or original) input; the checks: the
// deltas joined, response.*.done, output_item.done and response.completed all hold exactly the
// non-streamed rewrite (which is `astgate rewrite --tool`'s output, the golden corpus's
// expected.json/txt), ids, call_ids, output indexes and names stay, sequence_number runs 0, 1,
// 2, ... without gaps, every other event is the upstream's, and the SDK's raw stream and
// responses.stream().finalResponse() agree. Inputs are cut at seeded points inside JSON escapes
// and around multi-byte characters (and TCP writes inside UTF-8 characters), with parallel
// (interleaved) calls, text plus calls, no .done events, Python-style (ensure_ascii) JSON.
// Also: the tool golden corpus (tests/golden/2xx-tool-*) as Responses items, the text golden
// corpus as Write calls of notes.md, unknown tools and arguments that are not JSON byte for byte,
// a stream cut inside a call, limits.max_held, the audit log (tool, call_id, argument, path), and
// a block rule. Without ASTGATE_BIN the same tests run against the fake alone and expect every
// input unchanged.

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';
import { FakeApis, RESPONSE_ID, toolIds, toolIndex, toolInput } from './fake-responses.mjs';
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
    cliRewriteText,
    writeRules,
    writeConfig,
    parseSSE,
    annotate,
    withTimeout,
    REQUEST_TIMEOUT_MS,
} from './helpers.mjs';

const REQ_MODEL = 'gpt-4.1';
const INPUT = 'Write the agent into the repository, please.';

/* ------------------------------------------------------------------------------------------ */
/* what astgate must make of a call                                                             */

// `astgate rewrite --tool` (the non-streamed rewrite) of one call's input; the input itself
// without the proxy. kind: args, text, patch-create:PATH, patch-update:PATH.
const oracleCache = new Map();
function toolRewrite(tool, input, kind = 'args') {
    if (!PROXIED) return input;
    const key = JSON.stringify([tool, kind, input]);
    if (!oracleCache.has(key)) {
        const out = execFileSync(BIN, ['rewrite', '--tool', tool, '--input', kind, '--rules', RULES], {
            cwd: ROOT,
            input,
            encoding: 'utf8',
            stdio: ['pipe', 'pipe', 'ignore'],
        });
        oracleCache.set(key, out);
    }
    return oracleCache.get(key);
}

// The --input kind of a tool item spec.
function kindOf(t) {
    if (t.type === 'function_call') return 'args';
    if (t.type === 'custom_tool_call') return 'text';
    return `patch-${t.operation.type === 'create_file' ? 'create' : 'update'}:${t.operation.path}`;
}

// What the client must get as the input of tool item spec t.
function wantInput(t) {
    return toolRewrite(t.type === 'apply_patch_call' ? 'apply_patch' : t.name, toolInput(t), kindOf(t));
}

// The tool golden corpus: {name, tool, kind, input, expected} for each tests/golden case with a
// tool.txt (line 1: the tool, line 2: the --input kind) that runs with rules/mastra.yaml.
function loadToolCorpus() {
    const base = path.join(ROOT, 'tests', 'golden');
    const out = [];
    for (const name of fs.readdirSync(base).sort()) {
        const dir = path.join(base, name);
        if (!fs.existsSync(path.join(dir, 'tool.txt')) || fs.existsSync(path.join(dir, 'rules.yaml'))) continue;
        const lines = fs.readFileSync(path.join(dir, 'tool.txt'), 'utf8').split('\n');
        const tool = lines[0].trim();
        const kind = (lines[1] ?? '').trim() || 'args';
        const ext = fs.existsSync(path.join(dir, 'input.json')) ? 'json' : 'txt';
        const input = fs.readFileSync(path.join(dir, `input.${ext}`), 'utf8');
        const exp = path.join(dir, `expected.${ext}`);
        const expected = fs.existsSync(exp) ? fs.readFileSync(exp, 'utf8') : input;
        out.push({ name, tool, kind, input, expected });
    }
    return out;
}

// The Responses item that carries a tool golden case.
function itemOf(c) {
    if (c.kind === 'args') return { type: 'function_call', name: c.tool, arguments: c.input };
    if (c.kind === 'text') return { type: 'custom_tool_call', name: c.tool, input: c.input };
    const m = c.kind.match(/^patch-(create|update):(.*)$/);
    assert.ok(m, `tool.txt kind ${c.kind}`);
    return { type: 'apply_patch_call', operation: { type: `${m[1]}_file`, path: m[2], diff: c.input } };
}

/* ------------------------------------------------------------------------------------------ */
/* calls used below                                                                             */

const AGENT_TS = [
    "import { Agent } from '@mastra/core/agent';",
    "import { openai } from '@ai-sdk/openai';",
    '',
    '// café ☕ 🚀 <b>&</b>',
    'export const weatherAgent = new Agent({',
    "\tname: 'Weather \"Agent\"',",
    '  instructions: "Say \\"hi\\"\\n, then the weather.",',
    "  model: openai('gpt-4o'),",
    '});',
    '',
].join('\n');
const AGENT_TS_NANO = AGENT_TS.replace("openai('gpt-4o')", "openai('gpt-4.1-nano')");

const write = (filePath, content, extra = {}) => ({ type: 'function_call', name: 'Write', arguments: JSON.stringify({ file_path: filePath, content }), ...extra });
const WRITE_AGENT = write('src/mastra/agents/weather-agent.ts', AGENT_TS);
// the same, as a Python server writes its arguments (ensure_ascii, ", " separators)
const WRITE_AGENT_PY = {
    type: 'function_call',
    name: 'Write',
    arguments: `{"file_path": "src/mastra/agents/weather-agent.ts", "content": ${pyString(AGENT_TS)}}`,
};
const EDIT_AGENT = {
    type: 'function_call',
    name: 'Edit',
    arguments: JSON.stringify({
        file_path: 'src/mastra/agents/weather-agent.ts',
        old_string: "export const weatherAgent = new Agent({ name: 'w', model: openai('gpt-4o-mini') });",
        new_string: "export const weatherAgent = new Agent({ name: 'w', model: openai('gpt-4o') });",
    }),
};
const PATCH_ENVELOPE = [
    '*** Begin Patch',
    '*** Add File: src/mastra/agents/weather-agent.ts',
    ...AGENT_TS.split('\n')
        .slice(0, -1)
        .map((l) => '+' + l),
    '*** Update File: src/mastra/index.ts',
    '@@ export const mastra = new Mastra({',
    '-  agents: {},',
    '+  agents: { weatherAgent },',
    '*** End Patch',
    '',
].join('\n');
const PATCH_FUNCTION = { type: 'function_call', name: 'apply_patch', arguments: JSON.stringify({ input: PATCH_ENVELOPE }) };
const PATCH_CUSTOM = { type: 'custom_tool_call', name: 'apply_patch', input: PATCH_ENVELOPE };
const PATCH_CREATE = {
    type: 'apply_patch_call',
    operation: {
        type: 'create_file',
        path: 'src/mastra/agents/weather-agent.ts',
        diff: AGENT_TS.split('\n')
            .slice(0, -1)
            .map((l) => '+' + l)
            .join('\n') + '\n',
    },
};
const PATCH_UPDATE = {
    type: 'apply_patch_call',
    operation: {
        type: 'update_file',
        path: 'src/mastra/agents/other.ts',
        diff: "@@\n-const old = 1;\n+import { Agent } from '@mastra/core/agent';\n+import { openai } from '@ai-sdk/openai';\n+export const other = new Agent({ name: 'é', model: openai('gpt-4o') });\n",
    },
};
const PATCH_DELETE = { type: 'apply_patch_call', operation: { type: 'delete_file', path: 'src/mastra/agents/old.ts' } };
const UNKNOWN_TOOL = { type: 'function_call', name: 'get_weather', arguments: JSON.stringify({ city: 'Zürich', code: "new Agent({ model: openai('gpt-4o') })" }) };
const NOT_JSON = { type: 'function_call', name: 'Write', arguments: '{"file_path":"src/a.ts","content":"export const a = new Agent({ model: openai(\'gpt-4o\') })\\n' };
const NOT_CODE = write('notes/readme.py', "agent = Agent(model=openai('gpt-4o'))\n");
const TEXT_WITH_CODE = "I'll write the agent.\n\n```ts\nconst a = new Agent({ name: 'a', model: openai('gpt-4o') });\n```\n";

const ALL_CALLS = { WRITE_AGENT, WRITE_AGENT_PY, EDIT_AGENT, PATCH_FUNCTION, PATCH_CUSTOM, PATCH_CREATE, PATCH_UPDATE };

/* ------------------------------------------------------------------------------------------ */
/* the target                                                                                   */

async function openFake({ rules = RULES, config = null } = {}) {
    const fake = await FakeApis.start();
    let proc = null;
    try {
        if (PROXIED) proc = await Astgate.start({ upstream: fake.url, rules, config });
    } catch (err) {
        await fake.close();
        throw err;
    }
    const origin = proc ? proc.origin : fake.url;
    return {
        fake,
        proc,
        origin,
        client: new OpenAI({ baseURL: origin + '/v1', apiKey: API_KEY, maxRetries: 0, timeout: REQUEST_TIMEOUT_MS }),
        async close() {
            try {
                if (proc) await proc.stop();
            } finally {
                await fake.close();
            }
        },
    };
}

async function post(t, spec, { stream, rid } = {}) {
    const before = t.fake.requests.length;
    t.fake.enqueue('/v1/responses', spec);
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` };
    if (rid) headers['x-request-id'] = rid;
    const res = await fetch(`${t.origin}/v1/responses`, {
        method: 'POST',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        headers,
        body: JSON.stringify({ model: REQ_MODEL, input: INPUT, ...(stream ? { stream: true } : {}) }),
    });
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200, body.toString('utf8'));
    return { res, body, rec: t.fake.requests[before] };
}

// The upstream's SSE bytes, as the fake wrote them.
function upstreamSSE(rec) {
    return rec.reply.events.map((e) => `event: ${e.event}\ndata: ${e.raw}\n\n`).join('');
}

/* ------------------------------------------------------------------------------------------ */
/* checks                                                                                       */

const TOOL_FIELD = { function_call: 'arguments', custom_tool_call: 'input', apply_patch_call: 'diff' };
const TOOL_EVENT = {
    'response.function_call_arguments': 'function_call',
    'response.custom_tool_call_input': 'custom_tool_call',
    'response.apply_patch_call_operation_diff': 'apply_patch_call',
};
const toolDelta = (type) => type?.endsWith('.delta') && TOOL_EVENT[type.slice(0, -6)];
const toolDone = (type) => type?.endsWith('.done') && TOOL_EVENT[type.slice(0, -5)];

function itemInput(item) {
    if (item.type === 'function_call') return item.arguments;
    if (item.type === 'custom_tool_call') return item.input;
    if (item.type === 'apply_patch_call') return item.operation?.diff;
    return undefined;
}

// An event without what astgate may change: sequence_number, deltas, the full texts and inputs.
function strip(d) {
    const x = structuredClone(d);
    delete x.sequence_number;
    const item = (it) => {
        if (!it) return;
        if (it.type === 'function_call') delete it.arguments;
        if (it.type === 'custom_tool_call') delete it.input;
        if (it.type === 'apply_patch_call' && it.operation) delete it.operation.diff;
        if (it.type === 'message') for (const p of it.content ?? []) if (p.type === 'output_text') delete p.text;
    };
    if (x.type === 'response.output_text.delta' || toolDelta(x.type)) delete x.delta;
    if (x.type === 'response.output_text.done') delete x.text;
    if (x.type === 'response.content_part.done' && x.part?.type === 'output_text') delete x.part.text;
    if (toolDone(x.type)) delete x[TOOL_FIELD[toolDone(x.type)]];
    if (x.type === 'response.output_item.done' || x.type === 'response.output_item.added') item(x.item);
    if (['response.completed', 'response.incomplete', 'response.failed'].includes(x.type)) {
        for (const it of x.response?.output ?? []) item(it);
        delete x.response?.output_text;
    }
    return x;
}

// Checks a streamed reply (the proxy's body) against the events the fake sent.
//   calls: Map output_index -> the input the client must get for the tool item there
//   texts: what the message's parts must hold (the text path's rewrite)
//   complete: the upstream stream ran to response.completed
// Returns {inputs: Map output_index -> deltas joined, events}.
function assertToolStream(upEvents, body, { calls, texts = [], complete = true }) {
    const px = parseSSE(body.toString('utf8'));
    assert.ok(!px.unterminated && px.trailing === '', `the stream ends inside an event: ${JSON.stringify(px.trailing)}`);
    const items = new Map(); // output_index -> the upstream's item (from output_item.added)
    for (const { data } of upEvents) if (data.type === 'response.output_item.added') items.set(data.output_index, data.item);
    const inputs = new Map();
    const sawDelta = new Set();
    const textGot = texts.map(() => '');
    let u = 0;
    const events = [];
    px.events.forEach((ev, i) => {
        let d;
        try {
            d = JSON.parse(ev.data);
        } catch (err) {
            assert.fail(`event ${i} is not JSON (${err.message}): ${ev.data.slice(0, 200)}`);
        }
        events.push(d);
        const where = `event ${i} (${d.type})`;
        assert.equal(ev.event, d.type, `${where}: the event line names the type`);
        assert.equal(d.sequence_number, i, `${where}: sequence_number`);
        // the input of every copy of a call equals the deltas sent before it and what it must be
        const full = (k, got, what, deltasToo) => {
            assert.ok(calls.has(k), `${where}: output ${k} is not a tool call`);
            assert.equal(got, calls.get(k), `${where}: ${what} of output ${k}`);
            if (deltasToo) assert.equal(inputs.get(k) ?? '', calls.get(k), `${where}: the deltas of output ${k} before it`);
        };
        if (toolDelta(d.type)) {
            const it = items.get(d.output_index);
            assert.ok(it, `${where}: a delta for output ${d.output_index}, which was never added`);
            assert.equal(d.item_id, it.id, `${where}: item_id`);
            assert.equal(toolDelta(d.type), it.type, `${where}: the delta's type against the item's`);
            inputs.set(d.output_index, (inputs.get(d.output_index) ?? '') + d.delta);
            sawDelta.add(d.output_index);
        }
        if (toolDone(d.type)) {
            assert.equal(d.item_id, items.get(d.output_index)?.id, `${where}: item_id`);
            full(d.output_index, d[TOOL_FIELD[toolDone(d.type)]], TOOL_FIELD[toolDone(d.type)], true);
        }
        if (d.type === 'response.output_item.done' && calls.has(d.output_index)) {
            const up = items.get(d.output_index);
            assert.equal(d.item.id, up.id, `${where}: item.id`);
            assert.equal(d.item.call_id, up.call_id, `${where}: item.call_id`);
            assert.equal(d.item.name, up.name, `${where}: item.name`);
            full(d.output_index, itemInput(d.item), 'item input', sawDelta.has(d.output_index));
        }
        if (d.type === 'response.output_text.delta') textGot[d.content_index] += d.delta;
        if (d.type === 'response.output_text.done') assert.equal(d.text, texts[d.content_index], `${where}: text`);
        if (['response.completed', 'response.incomplete', 'response.failed'].includes(d.type)) {
            d.response.output.forEach((it, k) => {
                if (calls.has(k)) full(k, itemInput(it), 'response.output[k] input', sawDelta.has(k));
                if (it.type === 'message') it.content.forEach((p, c) => assert.equal(p.text, texts[c], `${where}: message part ${c}`));
            });
        }
        // the upstream's next event (held deltas of a call may be missing), or a delta astgate sent
        const same = (x) => x && x.event === ev.event && JSON.stringify(strip(x.data)) === JSON.stringify(strip(d));
        let v = u;
        while (v < upEvents.length && !same(upEvents[v]) && toolDelta(upEvents[v].data.type)) v++;
        if (same(upEvents[v])) {
            u = v + 1;
            return;
        }
        assert.ok(toolDelta(d.type) || d.type === 'response.output_text.delta', `${where} is neither the upstream's next event (${upEvents[u]?.event}) nor a delta astgate sends`);
    });
    while (u < upEvents.length && toolDelta(upEvents[u].data.type)) u++;
    assert.equal(u, upEvents.length, `every upstream event but held deltas reached the client, in order (stopped at ${upEvents[u]?.event})`);
    for (const [k, w] of calls) {
        if (sawDelta.has(k) || (complete && upEvents.some((e) => toolDelta(e.data.type) && e.data.output_index === k))) {
            assert.equal(inputs.get(k) ?? '', w, `the deltas of output ${k}, joined`);
        }
    }
    if (complete) texts.forEach((w, c) => assert.equal(textGot[c], w, `the text deltas of part ${c}`));
    return { inputs, events };
}

// The SDK's raw stream (responses.create({stream: true})): deltas joined, .done and completed.
async function assertSdkStream(t, spec, calls) {
    t.fake.enqueue('/v1/responses', spec);
    const stream = await t.client.responses.create({ model: REQ_MODEL, input: INPUT, stream: true });
    const deltas = new Map();
    const dones = new Map();
    let completed = null;
    for await (const ev of stream) {
        if (toolDelta(ev.type)) deltas.set(ev.output_index, (deltas.get(ev.output_index) ?? '') + ev.delta);
        if (toolDone(ev.type)) dones.set(ev.output_index, ev[TOOL_FIELD[toolDone(ev.type)]]);
        if (ev.type === 'response.completed') completed = ev.response;
    }
    assert.ok(completed, 'response.completed');
    for (const [k, w] of calls) {
        if (deltas.has(k)) assert.equal(deltas.get(k), w, `SDK stream: the deltas of output ${k}`);
        if (dones.has(k)) assert.equal(dones.get(k), w, `SDK stream: the .done of output ${k}`);
        assert.equal(itemInput(completed.output[k]), w, `SDK stream: response.completed output ${k}`);
    }
}

// responses.stream().finalResponse(): what the user finally gets.
async function assertFinal(t, spec, calls, texts = []) {
    t.fake.enqueue('/v1/responses', spec);
    const before = t.fake.requests.length;
    const helper = t.client.responses.stream({ model: REQ_MODEL, input: INPUT });
    const deltas = new Map();
    helper.on('response.function_call_arguments.delta', (e) => deltas.set(e.output_index, (deltas.get(e.output_index) ?? '') + e.delta));
    helper.on('response.custom_tool_call_input.delta', (e) => deltas.set(e.output_index, (deltas.get(e.output_index) ?? '') + e.delta));
    const final = await helper.finalResponse();
    const up = t.fake.requests[before].reply.events.at(-1).data.response;
    assert.equal(final.id, RESPONSE_ID);
    assert.equal(final.output.length, up.output.length, 'finalResponse(): output items');
    for (const [k, w] of calls) {
        const it = final.output[k];
        assert.equal(itemInput(it), w, `finalResponse(): the input of output ${k}`);
        assert.equal(it.id, up.output[k].id, `finalResponse(): id of output ${k}`);
        assert.equal(it.call_id, up.output[k].call_id, `finalResponse(): call_id of output ${k}`);
        assert.equal(it.name, up.output[k].name, `finalResponse(): name of output ${k}`);
        if (deltas.has(k)) assert.equal(deltas.get(k), w, `the helper's delta events of output ${k}`);
    }
    if (texts.length) assert.equal(final.output_text, texts.join(''), 'finalResponse().output_text');
    return final;
}

// Not streamed: the SDK's object, and the body bytes (the upstream's with only the tokens of the
// changed inputs and texts replaced).
async function assertNonStreamed(t, spec, calls, texts = []) {
    t.fake.enqueue('/v1/responses', spec);
    const r = await t.client.responses.create({ model: REQ_MODEL, input: INPUT });
    for (const [k, w] of calls) assert.equal(itemInput(r.output[k]), w, `create(): the input of output ${k}`);
    if (texts.length) assert.equal(r.output_text, texts.join(''), 'create(): output_text');
    const { res, body, rec } = await post(t, spec);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.equal(res.headers.get('content-length'), String(body.length));
    const lit = spec.style === 'python' ? pyString : JSON.stringify;
    let px = body.toString('utf8');
    const up = rec.reply.body.toString('utf8');
    const pairs = [];
    for (const [k, w] of calls) pairs.push([w, itemInput(rec.reply.object.output[k])]);
    rec.reply.object.output.forEach((it, k) => {
        if (it.type === 'message') it.content.forEach((p, c) => texts[c] !== undefined && pairs.push([texts[c], p.text]));
    });
    for (const [w, orig] of pairs) if (w !== orig) px = px.split(lit(w)).join(lit(orig));
    assert.equal(px, up, 'the body is the upstream body with only the inputs (and texts) changed');
    return r;
}

// The wanted input of every tool item of a spec (its layout included), by output index; a
// delete_file has none.
function callsOf(spec) {
    const texts = spec.texts ?? [];
    const layout = { ...(spec.layout ?? {}), items: spec.items };
    const out = new Map();
    spec.items.forEach((t, k) => {
        if (!(t.type === 'apply_patch_call' && t.operation.type === 'delete_file')) out.set(toolIndex(texts, layout, k), wantInput(t));
    });
    return out;
}

/* ------------------------------------------------------------------------------------------ */

const LAYOUTS = [
    {},
    { obfuscation: true },
    { noToolDone: true, reasoning: true },
    { interleave: true },
    { patchInAdded: true, obfuscation: true },
];

describe('responses API, tool calls', () => {
    let t;
    before(async () => {
        t = await openFake();
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    it('the calls used here: a Mastra agent in a Write gets gpt-4.1-nano, the others change too', { skip: NEEDS_PROXY }, () => {
        assert.equal(JSON.parse(wantInput(WRITE_AGENT)).content, AGENT_TS_NANO, 'the Write of a Mastra agent');
        assert.equal(wantInput(WRITE_AGENT_PY), WRITE_AGENT_PY.arguments.replace("openai('gpt-4o')", "openai('gpt-4.1-nano')"), 'Python-style arguments: only the changed bytes');
        for (const [name, c] of Object.entries(ALL_CALLS)) assert.notEqual(wantInput(c), toolInput(c), `${name} is rewritten`);
        for (const c of [UNKNOWN_TOOL, NOT_JSON, NOT_CODE]) assert.equal(wantInput(c), toolInput(c));
    });

    for (const [name, call] of Object.entries(ALL_CALLS)) {
        const shapes = [
            ['one call', { items: [call] }],
            ['two calls', { items: [call, WRITE_AGENT] }],
            ['text plus a call', { texts: [TEXT_WITH_CODE], items: [call] }],
            ['two calls interleaved', { items: [PATCH_CUSTOM, call], layout: { interleave: true } }],
        ];
        for (const [what, base] of shapes) {
            it(`${name}, ${what}: not streamed, streamed (raw, SDK stream, finalResponse())`, async () => {
                const texts = (base.texts ?? []).map((x) => cliRewriteText(x));
                const calls = callsOf(base);
                await assertNonStreamed(t, base, calls, texts);
                for (const seed of [1, 2, 3, 4, 5]) {
                    const layout = { ...LAYOUTS[seed % LAYOUTS.length], ...(base.layout ?? {}) };
                    const spec = { ...base, layout, seed: seed * 11 + name.length, style: seed === 5 ? 'python' : undefined };
                    try {
                        const { body, rec } = await post(t, spec, { stream: true });
                        assertToolStream(rec.reply.events, body, { calls: callsOf(spec), texts });
                        if (spec.style === 'python') assert.ok(!/[^\x00-\x7f]/.test(body.toString('utf8')), 'a Python-style stream stays ASCII');
                    } catch (err) {
                        throw annotate(err, `seed ${spec.seed} layout ${JSON.stringify(layout)} style ${spec.style}`);
                    }
                }
                await assertSdkStream(t, { ...base, seed: 77 }, calls);
                await assertFinal(t, { ...base, seed: 78, layout: { obfuscation: true, ...(base.layout ?? {}) } }, calls, texts);
            });
        }
    }

    it('apply_patch_call whose diff streams in apply_patch_call_operation_diff events (raw)', async () => {
        for (const [k, call] of [PATCH_CREATE, PATCH_UPDATE].entries()) {
            for (const seed of [1, 2, 3, 4]) {
                const spec = { texts: k ? [TEXT_WITH_CODE] : [], items: [call, WRITE_AGENT], layout: { patchDeltas: true, interleave: seed % 2 === 0, reasoning: seed === 3 }, seed };
                const calls = callsOf(spec);
                const { body, rec } = await post(t, spec, { stream: true });
                const r = assertToolStream(rec.reply.events, body, { calls, texts: spec.texts.map((x) => cliRewriteText(x)) });
                const idx = [...calls.keys()][0];
                assert.equal(r.inputs.get(idx), wantInput(call), 'the diff deltas joined');
                // only event types the upstream sent
                const upTypes = new Set(rec.reply.events.map((e) => e.data.type));
                for (const e of r.events) assert.ok(upTypes.has(e.type), `astgate sent an event type the upstream did not: ${e.type}`);
            }
        }
    });

    it('apply_patch_call with only output_item.added / .done: the diff in output_item.done and response.completed', async () => {
        for (const call of [PATCH_CREATE, PATCH_UPDATE, PATCH_DELETE]) {
            for (const layout of [{}, { patchInAdded: true }]) {
                const spec = { items: [call], layout, seed: 5 };
                const calls = callsOf(spec);
                const { body, rec } = await post(t, spec, { stream: true });
                const r = assertToolStream(rec.reply.events, body, { calls });
                assert.equal(r.inputs.size, 0, 'no delta events');
                if (layout.patchInAdded && call !== PATCH_DELETE) {
                    const added = r.events.find((e) => e.type === 'response.output_item.added');
                    assert.equal(added.item.operation.diff, wantInput(call), 'output_item.added that already holds the diff');
                }
                await assertFinal(t, { ...spec, seed: 6 }, calls);
                await assertNonStreamed(t, spec, calls);
            }
        }
    });

    it('unknown tools, files that are not code and a delete pass through byte for byte', async () => {
        const spec = { texts: ['No code here, just a plan.'], items: [UNKNOWN_TOOL, NOT_CODE, PATCH_DELETE] };
        for (const seed of [1, 2, 3]) {
            const s = { ...spec, seed, layout: LAYOUTS[seed] };
            const { body, rec } = await post(t, s, { stream: true });
            // the unknown tool's events are the upstream's bytes but for their number (the Write's
            // deltas before them may be held)
            const seq0 = (x) => x.replace(/"sequence_number":\d+/g, '"sequence_number":0');
            const unknown = rec.reply.events.filter((e) => e.data.item_id === toolIds(UNKNOWN_TOOL, 0).id).map((e) => seq0(`event: ${e.event}\ndata: ${e.raw}\n\n`));
            assert.ok(unknown.length > 0);
            for (const e of unknown) assert.ok(seq0(body.toString('utf8')).includes(e), `the unknown tool's event went through as it came: ${e.slice(0, 120)}`);
            assertToolStream(rec.reply.events, body, { calls: callsOf(s), texts: spec.texts });
        }
        const { body, rec } = await post(t, spec);
        assert.ok(body.equals(rec.reply.body), 'not streamed: the body byte for byte');
        const only = { items: [UNKNOWN_TOOL], seed: 4 };
        const r = await post(t, only, { stream: true });
        assert.equal(r.body.toString('utf8'), upstreamSSE(r.rec), 'streamed, an unknown tool alone: byte for byte');
    });

    it('arguments that are not JSON pass through unchanged (and are logged)', async () => {
        const spec = { texts: [TEXT_WITH_CODE], items: [NOT_JSON, WRITE_AGENT] };
        const calls = callsOf(spec);
        assert.equal(calls.get(1), NOT_JSON.arguments);
        await assertNonStreamed(t, spec, calls, [cliRewriteText(TEXT_WITH_CODE)]);
        for (const seed of [1, 2, 3]) {
            const rid = `e2e-tool-notjson-${seed}`;
            const s = { ...spec, seed, layout: LAYOUTS[seed] };
            const { body, rec } = await post(t, s, { stream: true, rid });
            assertToolStream(rec.reply.events, body, { calls: callsOf(s), texts: [cliRewriteText(TEXT_WITH_CODE)] });
            if (t.proc) {
                const line = await withTimeout(t.proc.waitLine((l) => l.includes(rid) && l.includes('tool_call_skipped')), 5000, 'the skip line');
                const j = JSON.parse(line);
                assert.equal(j.tool, 'Write');
                assert.equal(j.call_id, toolIds(NOT_JSON, 0).call_id);
            }
        }
        await assertFinal(t, { ...spec, seed: 9 }, calls);
    });

    it('a stream cut off inside a call: what was held goes out, unchanged (not JSON), at the end', async () => {
        for (const seed of [1, 2, 3, 4]) {
            const spec = { texts: [TEXT_WITH_CODE], items: [WRITE_AGENT, PATCH_CUSTOM], seed, cutCall: true, layout: { interleave: seed % 2 === 0 } };
            const { body, rec } = await post(t, spec, { stream: true });
            // the deltas the upstream sent for each call, joined: what the client must get
            const sent = new Map();
            for (const { data } of rec.reply.events) if (toolDelta(data.type)) sent.set(data.output_index, (sent.get(data.output_index) ?? '') + data.delta);
            const calls = new Map();
            for (const [k, s] of sent) {
                const item = spec.items[k - 1];
                calls.set(k, s === toolInput(item) ? wantInput(item) : item.type === 'function_call' ? s : toolRewrite(item.name, s, 'text'));
            }
            const r = assertToolStream(rec.reply.events, body, { calls, texts: [cliRewriteText(TEXT_WITH_CODE)], complete: false });
            for (const [k, w] of calls) assert.equal(r.inputs.get(k), w, `output ${k}: the deltas joined`);
        }
    });

    it('the audit log names the tool, the call id, the argument and the path, streamed and not', { skip: NEEDS_PROXY }, async () => {
        const spec = { items: [EDIT_AGENT, WRITE_AGENT, PATCH_CREATE] };
        for (const stream of [false, true]) {
            const rid = `e2e-tool-audit-${stream}`;
            const { res } = await post(t, { ...spec, seed: 3 }, { stream, rid });
            if (!stream) assert.equal(res.headers.get('x-astgate-rewrites'), '3');
            const lines = await t.proc.waitRewriteLines(rid, 3);
            const got = lines.map((l) => [l.choice, l.tool, l.call_id, l.argument, l.path, l.rule, l.before, l.after, l.streamed]).sort();
            const exp = [
                [0, 'Edit', toolIds(EDIT_AGENT, 0).call_id, 'new_string', 'src/mastra/agents/weather-agent.ts', 'mastra-agent-model', "'gpt-4o'", "'gpt-4.1-nano'", stream],
                [1, 'Write', toolIds(WRITE_AGENT, 1).call_id, 'content', 'src/mastra/agents/weather-agent.ts', 'mastra-agent-model', "'gpt-4o'", "'gpt-4.1-nano'", stream],
                [2, 'apply_patch', toolIds(PATCH_CREATE, 2).call_id, 'diff', 'src/mastra/agents/weather-agent.ts', 'mastra-agent-model', "'gpt-4o'", "'gpt-4.1-nano'", stream],
            ].sort();
            assert.deepEqual(got, exp);
            for (const l of lines) assert.equal(l.route, '/v1/responses');
        }
    });

    it('the tool golden corpus as Responses items (function_call, custom_tool_call, apply_patch_call)', async () => {
        const cases = loadToolCorpus();
        assert.ok(cases.length > 0, 'no tool golden cases');
        for (const [k, c] of cases.entries()) {
            try {
                const item = itemOf(c);
                if (PROXIED) assert.equal(wantInput(item), c.expected, 'astgate rewrite --tool gives expected');
                const w = PROXIED ? c.expected : c.input;
                const spec = { items: [item, WRITE_AGENT], texts: k % 3 === 0 ? [TEXT_WITH_CODE] : [] };
                const texts = spec.texts.map((x) => cliRewriteText(x));
                const calls = callsOf(spec);
                assert.equal(calls.get(toolIndex(spec.texts, spec, 0)), w);
                await assertNonStreamed(t, spec, calls, texts);
                for (const seed of [k, k + 101]) {
                    const s = { ...spec, seed, layout: { ...LAYOUTS[seed % LAYOUTS.length], patchDeltas: seed % 2 === 1 }, style: seed % 4 === 2 ? 'python' : undefined };
                    const { body, rec } = await post(t, s, { stream: true });
                    assertToolStream(rec.reply.events, body, { calls: callsOf(s), texts });
                }
                await assertFinal(t, { ...spec, seed: k + 200 }, calls, texts);
            } catch (err) {
                throw annotate(err, c.name);
            }
        }
    });

    it('the text golden corpus as Write calls of notes.md (Markdown), not streamed and streamed', async () => {
        const corpus = loadCorpus();
        for (const [k, c] of corpus.entries()) {
            // a Markdown file's fences are rewritten as in a text reply; its unfenced text is prose
            // (a reply's text is also tried as code when it has no fences: `bare`)
            const bare = /bare/.test(c.name);
            const md = bare && PROXIED ? execFileSync(BIN, ['rewrite', '--no-bare', '--rules', RULES], { cwd: ROOT, input: c.input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] }) : want(c);
            const call = write('notes.md', c.input);
            const spec = { items: [call], seed: k, layout: LAYOUTS[k % LAYOUTS.length], style: k % 7 === 3 ? 'python' : undefined };
            // JSON.stringify's escaping is what astgate re-encodes a changed string with
            const o = toolIndex([], { ...spec.layout, items: spec.items }, 0);
            const calls = new Map([[o, JSON.stringify({ file_path: 'notes.md', content: md })]]);
            try {
                // the oracle, byte for byte, for every fifth case and those that are bare code
                if (bare || k % 5 === 0) assert.equal(wantInput(call), calls.get(o), 'astgate rewrite --tool Write of notes.md');
                const r = await assertNonStreamed(t, spec, calls);
                assert.equal(JSON.parse(r.output[o].arguments).content, md);
                const { body, rec } = await post(t, spec, { stream: true });
                const s = assertToolStream(rec.reply.events, body, { calls });
                if (s.inputs.has(o)) assert.equal(JSON.parse(s.inputs.get(o)).content, md, 'the streamed deltas, joined and parsed');
                const final = await assertFinal(t, { ...spec, seed: k + 1000 }, calls);
                assert.equal(JSON.parse(final.output[o].arguments).content, md);
            } catch (err) {
                throw annotate(err, `${c.name} (seed ${spec.seed})`);
            }
        }
    });
});

/* ------------------------------------------------------------------------------------------ */

describe('responses API, tool calls, limits.max_held', { skip: NEEDS_PROXY }, () => {
    let t;
    before(async () => {
        t = await openFake({ config: writeConfig({ rules: [path.join(ROOT, RULES)], limits: { max_held: 2048 } }) });
    });
    after(async () => {
        await t?.close();
    });

    it('a call larger than max_held streams through unchanged; a small one is rewritten', async () => {
        const big = write('src/mastra/agents/big.ts', '// ' + 'x'.repeat(4000) + '\n' + AGENT_TS);
        for (const seed of [1, 2, 3]) {
            const rid = `e2e-tool-held-${seed}`;
            const spec = { items: [big, WRITE_AGENT], seed, layout: { interleave: seed === 2 } };
            const calls = new Map([
                [0, big.arguments],
                [1, wantInput(WRITE_AGENT)],
            ]);
            const { body, rec } = await post(t, spec, { stream: true, rid });
            assertToolStream(rec.reply.events, body, { calls });
            const line = await withTimeout(t.proc.waitLine((l) => l.includes(rid) && l.includes('tool_call_skipped')), 5000, 'the skip line');
            assert.match(JSON.parse(line).reason, /max_held/);
        }
        // not streamed, the body limit applies instead: the big call is rewritten
        t.fake.enqueue('/v1/responses', { items: [big] });
        const r = await t.client.responses.create({ model: REQ_MODEL, input: INPUT });
        assert.equal(r.output[0].arguments, wantInput(big));
        assert.notEqual(wantInput(big), big.arguments);
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
const EVAL_CODE = 'export function calc(userInput: string) {\n  return eval(userInput);\n}\n';

describe('responses API, tool calls, block rule', { skip: NEEDS_PROXY }, () => {
    let t;
    before(async () => {
        const rules = writeRules(fs.readFileSync(path.join(ROOT, RULES), 'utf8') + '\n---\n' + BLOCK_RULE);
        t = await openFake({ rules });
    });
    after(async () => {
        await t?.close();
    });
    beforeEach(() => t?.proc?.assertAlive());

    const EVAL_CALLS = [write('src/calc.ts', EVAL_CODE), { type: 'custom_tool_call', name: 'apply_patch', input: `*** Begin Patch\n*** Add File: src/calc.ts\n${EVAL_CODE.split('\n').slice(0, -1).map((l) => '+' + l).join('\n')}\n*** End Patch\n` }];
    for (const [k, call] of EVAL_CALLS.entries()) {
        for (const seed of [1, 2, 3]) {
            it(`streamed ${call.name} (seed ${seed}): text and the earlier call, then an error event numbered next, then the end`, async () => {
                const spec = { texts: [TEXT_WITH_CODE], items: [WRITE_AGENT, call], seed, layout: LAYOUTS[seed] };
                const [first, blocked] = [...callsOf({ ...spec, items: [WRITE_AGENT, WRITE_AGENT] }).keys()];
                const { body } = await post(t, spec, { stream: true, rid: `e2e-tool-block-${k}-${seed}` });
                const px = parseSSE(body.toString('utf8'));
                assert.equal(px.trailing, '');
                let args = '';
                px.events.forEach((ev, i) => {
                    const d = JSON.parse(ev.data);
                    assert.equal(d.sequence_number, i, 'sequence_number');
                    if (i < px.events.length - 1) assert.notEqual(d.type, 'error', 'the error comes last');
                    if (toolDelta(d.type) && d.output_index === first) args += d.delta;
                    if (toolDelta(d.type)) assert.notEqual(d.output_index, blocked, 'no delta of the blocked call');
                });
                assert.equal(args, wantInput(WRITE_AGENT), 'the call before the blocked one, rewritten');
                const last = px.events.at(-1);
                assert.equal(last.event, 'error');
                const err = JSON.parse(last.data);
                assert.equal(err.code, 'no-eval');
                assert.equal(err.error.type, 'astgate_blocked');
                assert.ok(!body.toString('utf8').includes('eval(userInput)'), 'blocked code reached the client');
            });
        }
    }

    it('streamed through the SDK: finalResponse() rejects with the rule id', async () => {
        t.fake.enqueue('/v1/responses', { items: [EVAL_CALLS[0]], seed: 9 });
        await assert.rejects(t.client.responses.stream({ model: REQ_MODEL, input: INPUT }).finalResponse(), (err) => {
            assert.ok(err instanceof OpenAI.APIError, String(err));
            assert.equal(err.code, 'no-eval');
            return true;
        });
    });

    it('not streamed: 422 with the rule id', async () => {
        for (const call of EVAL_CALLS) {
            t.fake.enqueue('/v1/responses', { items: [call] });
            await assert.rejects(t.client.responses.create({ model: REQ_MODEL, input: INPUT }), (err) => {
                assert.ok(err instanceof OpenAI.UnprocessableEntityError, String(err));
                assert.equal(err.code, 'no-eval');
                return true;
            });
        }
    });
});
