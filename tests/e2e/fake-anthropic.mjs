// The Anthropic Messages side of the fake upstream (POST /v1/messages; the server is FakeApis in
// fake-responses.mjs, which serves both paths). Builds Message objects and their event streams
// as the API sends them (wire-formats.md section 3): message_start, per block content_block_start
// / content_block_delta / content_block_stop, ping, message_delta, message_stop, each with its
// `event:` line. Text is split into text_delta events at seeded points with fences cut on
// purpose (splitText of fake-upstream.mjs).
//
// A spec (fake.enqueue('/v1/messages', spec)):
//   texts: [string, ...]  one text block each
//   layout: { thinking, tool, pings, startText, spaces }
//     thinking:  a thinking block first (its text holds code that must pass untouched)
//     tool:      a tool_use block after the first text block (code in its input, untouched)
//     pings:     ping events between deltas
//     startText: content_block_start carries the first piece of the text
//     spaces:    JSON written with ", " and ": " as in Anthropic's docs
//     calls:     tool_use blocks after the text blocks, [{ id, name, input } | { id, name, json }]:
//                input an object, whose JSON text is written as `inner` says; json the exact JSON
//                text of the input (streamed, it need not be JSON: a slip, a cut)
//     inner:     how a call's input is written: 'js' (JSON.stringify, the default), 'python'
//                (json.dumps: ensure_ascii, ", " and ": "), 'spaced' (", " and ": ")
//     ascii:     every event (or the body) written as Python's json.dumps (ensure_ascii)
//     interleave: the events of the text and tool_use blocks interleaved at seeded points (blocks
//                start in index order; each block's own events in order, its stop last)
//     splitPairs: partial_json may cut a surrogate pair (each half escaped alone)
//   Streamed, a call's input JSON text is cut into partial_json pieces at seeded points, on
//   purpose inside escapes (\n, \", \u00e9), next to multi-byte characters, and with empty pieces.
//   seed: the delta cuts and TCP write cuts
//   cut: end the stream right after the delta holding byte `cut` of the last text (a cut-off
//        stream: no stop, no message_stop)
//   stopReason: default 'end_turn'

import { Rng, splitText, pyDumps } from './fake-upstream.mjs';

export const ANTHROPIC_MODEL = 'claude-haiku-4-5-20251001';
export const MESSAGE_ID = 'msg_01XFDUDYJgAACzvnptvVoYEL';
export const TOOL_INPUT = { path: 'agent.ts', code: "```ts\nnew Agent({ model: 'gpt-4o' })\n```" };
export const THINKING = "The user wants `new Agent({ model: 'gpt-4o' })` in a ```ts fence.";

// JSON with ", " and ": " separators (strings as JSON.stringify writes them).
export function spacedJson(v) {
    if (v === null || typeof v !== 'object') return JSON.stringify(v);
    if (Array.isArray(v)) return '[' + v.map(spacedJson).join(', ') + ']';
    return '{' + Object.entries(v).map(([k, x]) => JSON.stringify(k) + ': ' + spacedJson(x)).join(', ') + '}';
}

function usage(texts) {
    return { input_tokens: 2095, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: texts.reduce((a, t) => a + Math.ceil(t.length / 4), 1) };
}

// The blocks of a message in order: [{kind: 'thinking'|'text'|'tool'|'call', text?, t?, call?}]
// (t: text number; call: an entry of layout.calls).
export function blocksOf(texts, layout = {}) {
    const blocks = [];
    if (layout.thinking) blocks.push({ kind: 'thinking' });
    texts.forEach((text, t) => {
        blocks.push({ kind: 'text', text, t });
        if (t === 0 && layout.tool) blocks.push({ kind: 'tool' });
    });
    for (const call of layout.calls ?? []) blocks.push({ kind: 'call', call });
    return blocks;
}

// The block index of each call of layout.calls.
export function callIndexes(texts, layout = {}) {
    const out = [];
    blocksOf(texts, layout).forEach((b, i) => {
        if (b.kind === 'call') out.push(i);
    });
    return out;
}

// The JSON text of a call's input, as the fake writes it (inner layer).
export function callJson(call, layout = {}) {
    if (call.json !== undefined) return call.json;
    if (layout.inner === 'python') return pyDumps(call.input);
    if (layout.inner === 'spaced') return spacedJson(call.input);
    return JSON.stringify(call.input);
}

function isHigh(c) {
    return c >= 0xd800 && c <= 0xdbff;
}

// Cuts the JSON text of an input into partial_json pieces (their concatenation is text).
export function splitJson(text, rng, { splitPairs = false } = {}) {
    const mode = rng.int(0, 4);
    const cuts = new Set();
    if (mode !== 3) {
        const [lo, hi] = mode === 0 ? [1, 4] : mode === 1 ? [1, 24] : mode === 2 ? [8, 120] : [1, 60];
        for (let pos = rng.int(lo, hi); pos < text.length; pos += rng.int(lo, hi)) cuts.add(pos);
    }
    for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (text[i] === '\\') {
            // inside the escape: right after the backslash, or inside the hex of a \uXXXX
            if (rng.chance(0.5)) cuts.add(i + 1);
            if (text[i + 1] === 'u' && rng.chance(0.5)) cuts.add(i + rng.int(2, 5));
            if (text[i + 1] === 'u' && text[i + 6] === '\\' && rng.chance(0.5)) cuts.add(i + 6); // between a pair's escapes
            i++; // the escaped character
        } else if (c >= 0x80) {
            if (rng.chance(0.4)) cuts.add(i);
            if (rng.chance(0.4)) cuts.add(i + (isHigh(c) ? 2 : 1));
            if (isHigh(c) && splitPairs && rng.chance(0.7)) cuts.add(i + 1);
        }
    }
    const sorted = [...cuts]
        .filter((x) => x > 0 && x < text.length)
        .filter((x) => splitPairs || !(isHigh(text.charCodeAt(x - 1)) && !isHigh(text.charCodeAt(x)) && text.charCodeAt(x) >= 0xdc00 && text.charCodeAt(x) <= 0xdfff))
        .sort((a, b) => a - b);
    const out = [];
    let prev = 0;
    for (const x of sorted) {
        out.push(text.slice(prev, x));
        if (rng.chance(0.05)) out.push(''); // a fragment may be empty
        prev = x;
    }
    out.push(text.slice(prev));
    return out;
}

function callBlock(call) {
    return { type: 'tool_use', id: call.id, name: call.name, input: call.input ?? JSON.parse(call.json) };
}

// The block index of each text.
export function textIndexes(texts, layout = {}) {
    const out = [];
    blocksOf(texts, layout).forEach((b, i) => {
        if (b.kind === 'text') out[b.t] = i;
    });
    return out;
}

// A non-streamed Message (wire-formats.md 3.1).
export function messageObject(texts, layout = {}, stopReason = 'end_turn') {
    const content = blocksOf(texts, layout).map((b) => {
        if (b.kind === 'thinking') return { type: 'thinking', thinking: THINKING, signature: 'EqQBCgIYAhIM1gbcDa9GJwZA' };
        if (b.kind === 'tool') return { type: 'tool_use', id: 'toolu_01A09q90qw90lq917835lq9', name: 'write_file', input: TOOL_INPUT };
        if (b.kind === 'call') return callBlock(b.call);
        return { type: 'text', text: b.text, citations: null };
    });
    return {
        id: MESSAGE_ID,
        type: 'message',
        role: 'assistant',
        model: ANTHROPIC_MODEL,
        content,
        stop_reason: layout.calls?.length && stopReason === 'end_turn' ? 'tool_use' : stopReason,
        stop_sequence: null,
        usage: usage(texts),
    };
}

// The events of a streamed Message: [{event, data}] with data an object.
export function messageEvents(texts, { layout = {}, seed = 1, cut = null, stopReason = 'end_turn' } = {}) {
    const rng = new Rng(seed * 7 + 3);
    const crng = new Rng(seed * 17 + 11); // the calls' cuts and the interleaving
    if (layout.calls?.length && stopReason === 'end_turn') stopReason = 'tool_use';
    const ev = [];
    const lists = []; // interleave: the events of each block after a thinking block
    let sink = ev;
    const add = (data) => sink.push({ event: data.type, data });
    const ping = () => {
        if (layout.pings && rng.chance(0.2)) sink.push({ event: 'ping', data: { type: 'ping' } });
    };
    if (layout.interleave && cut !== null) throw new Error('fake-anthropic: cut and interleave together');
    add({
        type: 'message_start',
        message: { id: MESSAGE_ID, type: 'message', role: 'assistant', content: [], model: ANTHROPIC_MODEL, stop_reason: null, stop_sequence: null, usage: { input_tokens: 25, output_tokens: 1 } },
    });
    if (layout.pings) ev.push({ event: 'ping', data: { type: 'ping' } });
    const blocks = blocksOf(texts, layout);
    for (const [index, b] of blocks.entries()) {
        sink = ev;
        if (b.kind === 'thinking') {
            add({ type: 'content_block_start', index, content_block: { type: 'thinking', thinking: '', signature: '' } });
            add({ type: 'content_block_delta', index, delta: { type: 'thinking_delta', thinking: THINKING } });
            add({ type: 'content_block_delta', index, delta: { type: 'signature_delta', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA' } });
            add({ type: 'content_block_stop', index });
            continue;
        }
        if (layout.interleave) lists.push((sink = []));
        if (b.kind === 'tool') {
            const json = JSON.stringify(TOOL_INPUT);
            const mid = Math.floor(json.length / 2);
            add({ type: 'content_block_start', index, content_block: { type: 'tool_use', id: 'toolu_01A09q90qw90lq917835lq9', name: 'write_file', input: {} } });
            add({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: json.slice(0, mid) } });
            add({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: json.slice(mid) } });
            add({ type: 'content_block_stop', index });
            continue;
        }
        if (b.kind === 'call') {
            add({ type: 'content_block_start', index, content_block: { type: 'tool_use', id: b.call.id, name: b.call.name, input: {} } });
            for (const piece of splitJson(callJson(b.call, layout), crng, layout)) add({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: piece } });
            add({ type: 'content_block_stop', index });
            continue;
        }
        const last = b.t === texts.length - 1;
        const deltas = splitText(b.text, seed * 31 + b.t);
        let start = '';
        if (layout.startText && deltas.length > 1) start = deltas.shift();
        add({ type: 'content_block_start', index, content_block: { type: 'text', text: start } });
        let sent = start.length;
        for (const d of deltas) {
            add({ type: 'content_block_delta', index, delta: { type: 'text_delta', text: d } });
            sent += d.length;
            if (last && cut !== null && sent >= cut) return ev; // cut off
            ping();
        }
        add({ type: 'content_block_stop', index });
    }
    // blocks start in index order (the SDK appends each started block to content[] and finds it
    // again by index), then their events interleave
    let started = 0;
    while (lists.some((l) => l.length)) {
        const open = lists.filter((l, k) => l.length && k <= started);
        const l = open[crng.int(0, open.length - 1)];
        if (lists.indexOf(l) === started) started++;
        for (let k = crng.int(1, 3); k > 0 && l.length; k--) ev.push(l.shift());
    }
    sink = ev;
    add({ type: 'message_delta', delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: usage(texts).output_tokens } });
    add({ type: 'message_stop' });
    return ev;
}

// What the text of the last block is when the stream is cut at `cut` (the text up to the end of
// the delta that holds byte cut).
export function cutText(texts, { layout = {}, seed = 1, cut }) {
    const events = messageEvents(texts, { layout, seed, cut });
    const idx = textIndexes(texts, layout)[texts.length - 1];
    let s = '';
    for (const { data } of events) {
        if (data.index !== idx) continue;
        if (data.type === 'content_block_start') s += data.content_block.text;
        if (data.type === 'content_block_delta') s += data.delta.text;
    }
    return s;
}

// Serialises a Messages reply (an event or a Message) as the fake writes it; a Message's tool_use
// inputs are written as callJson says.
export function serializeMessages(data, layout = {}) {
    const ser = layout.ascii ? pyDumps : layout.spaces ? spacedJson : JSON.stringify;
    const calls = layout.calls ?? [];
    if (data?.type !== 'message' || calls.length === 0) return ser(data);
    const x = structuredClone(data);
    const raw = new Map();
    x.content.forEach((b, k) => {
        const call = b.type === 'tool_use' ? calls.find((c) => c.id === b.id) : null;
        if (!call) return;
        const mark = `@@astgate-input-${k}@@`;
        raw.set(JSON.stringify(mark), callJson(call, layout));
        b.input = mark;
    });
    let text = ser(x);
    for (const [mark, json] of raw) text = text.split(mark).join(json);
    return text;
}
