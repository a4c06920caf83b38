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
//   seed: the delta cuts and TCP write cuts
//   cut: end the stream right after the delta holding byte `cut` of the last text (a cut-off
//        stream: no stop, no message_stop)
//   stopReason: default 'end_turn'

import { Rng, splitText } from './fake-upstream.mjs';

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

// The blocks of a message in order: [{kind: 'thinking'|'text'|'tool', text?, t?}] (t: text number).
export function blocksOf(texts, layout = {}) {
    const blocks = [];
    if (layout.thinking) blocks.push({ kind: 'thinking' });
    texts.forEach((text, t) => {
        blocks.push({ kind: 'text', text, t });
        if (t === 0 && layout.tool) blocks.push({ kind: 'tool' });
    });
    return blocks;
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
        return { type: 'text', text: b.text, citations: null };
    });
    return {
        id: MESSAGE_ID,
        type: 'message',
        role: 'assistant',
        model: ANTHROPIC_MODEL,
        content,
        stop_reason: stopReason,
        stop_sequence: null,
        usage: usage(texts),
    };
}

// The events of a streamed Message: [{event, data}] with data an object.
export function messageEvents(texts, { layout = {}, seed = 1, cut = null, stopReason = 'end_turn' } = {}) {
    const rng = new Rng(seed * 7 + 3);
    const ev = [];
    const add = (data) => ev.push({ event: data.type, data });
    const ping = () => {
        if (layout.pings && rng.chance(0.2)) ev.push({ event: 'ping', data: { type: 'ping' } });
    };
    add({
        type: 'message_start',
        message: { id: MESSAGE_ID, type: 'message', role: 'assistant', content: [], model: ANTHROPIC_MODEL, stop_reason: null, stop_sequence: null, usage: { input_tokens: 25, output_tokens: 1 } },
    });
    if (layout.pings) ev.push({ event: 'ping', data: { type: 'ping' } });
    const blocks = blocksOf(texts, layout);
    for (const [index, b] of blocks.entries()) {
        if (b.kind === 'thinking') {
            add({ type: 'content_block_start', index, content_block: { type: 'thinking', thinking: '', signature: '' } });
            add({ type: 'content_block_delta', index, delta: { type: 'thinking_delta', thinking: THINKING } });
            add({ type: 'content_block_delta', index, delta: { type: 'signature_delta', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA' } });
            add({ type: 'content_block_stop', index });
            continue;
        }
        if (b.kind === 'tool') {
            const json = JSON.stringify(TOOL_INPUT);
            const mid = Math.floor(json.length / 2);
            add({ type: 'content_block_start', index, content_block: { type: 'tool_use', id: 'toolu_01A09q90qw90lq917835lq9', name: 'write_file', input: {} } });
            add({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: json.slice(0, mid) } });
            add({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: json.slice(mid) } });
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

// Serialises a Messages reply (event list or object) as the fake writes it.
export function serializeMessages(data, layout = {}) {
    return layout.spaces ? spacedJson(data) : JSON.stringify(data);
}
