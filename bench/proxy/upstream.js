#!/usr/bin/env node
// Fake OpenAI Chat Completions upstream for the proxy benchmark (bench/run-proxy.sh).
//
//   node upstream.js PORT            serve on 127.0.0.1:PORT (0 = any), print "listening PORT"
//   node upstream.js --dump N FILE   write the message content of reply N to FILE and exit
//
// POST /v1/chat/completions answers with a reply generated for this request: a counter n makes
// the agent's name, its id, its instructions and its model `openai('gpt-4o-<n>')` differ from
// request to request, so nothing can answer from a cache; every reply holds exactly one Mastra
// agent that rules/mastra.yaml rewrites. A request body with "stream":true gets the same content
// as ~20 chat.completion.chunk events (wire-formats.md §1.2) in separate writes; with a query
// `?delay_ms=D` the events after the first prose sentence wait D ms (time to first byte).
// GET /stats: {"requests": replies generated, "connections": connections accepted so far}.
// POST /bench/passthrough: the same replies on a path astgate does not rewrite.
// Any other request: 404. Keep-alive on; no logging.
'use strict';
const http = require('http');
const fs = require('fs');

const PROSE = 'Here is a Mastra agent that answers questions about your orders.\n\n';

function content(n) {
    const hex = (n * 2654435761 >>> 0).toString(16);
    return PROSE +
        '```ts\n' +
        "import { Agent } from '@mastra/core/agent';\n" +
        "import { openai } from '@ai-sdk/openai';\n" +
        "import { orderLookup, refundTool } from '../tools/orders';\n" +
        '\n' +
        `export const orderAgent${n} = new Agent({\n` +
        `  id: 'order-agent-${hex}',\n` +
        `  name: 'Order Agent ${n}',\n` +
        `  instructions: 'You help customer ${hex} with order ${n}: look it up, explain the ' +\n` +
        "    'status and offer a refund when the parcel is more than 10 days late.',\n" +
        `  model: openai('gpt-4o-${n}'),\n` +
        '  tools: { orderLookup, refundTool },\n' +
        `  defaultGenerateOptions: { maxSteps: ${2 + n % 5}, temperature: 0.${n % 10} },\n` +
        '});\n' +
        '\n' +
        `export async function ask${n}(question: string) {\n` +
        `  const result = await orderAgent${n}.generate(question);\n` +
        '  return result.text;\n' +
        '}\n' +
        '```\n\n' +
        `Register \`orderAgent${n}\` in your Mastra instance and call \`generate()\` with the ` +
        'question; the tools read the order id from the conversation. Keep the instructions short: ' +
        'the model follows them better, and a late parcel is the most common question anyway. ' +
        'Ask again if you also need an agent for returns and exchanges.';
}

function head(n) {
    return {
        id: `chatcmpl-bench${n}`,
        created: 1741569952 + n,
        model: 'gpt-4o-2024-08-06',
    };
}

function jsonReply(n) {
    const h = head(n);
    return JSON.stringify({
        id: h.id,
        object: 'chat.completion',
        created: h.created,
        model: h.model,
        choices: [{
            index: 0,
            message: {role: 'assistant', content: content(n), refusal: null, annotations: []},
            logprobs: null,
            finish_reason: 'stop',
        }],
        usage: {prompt_tokens: 31, completion_tokens: 170, total_tokens: 201},
        service_tier: 'default',
        system_fingerprint: 'fp_44709d6fcb',
    });
}

// The content cut into pieces: the prose sentence, then the rest in 16 pieces of about equal
// size (cut anywhere, fences included, as a model streams tokens).
function pieces(n) {
    const c = content(n);
    const rest = c.slice(PROSE.length);
    const out = [PROSE];
    const k = 16;
    for (let i = 0; i < k; i++)
        out.push(rest.slice(Math.floor(rest.length * i / k), Math.floor(rest.length * (i + 1) / k)));
    return out;
}

function chunk(h, delta, finish) {
    return 'data: ' + JSON.stringify({
        id: h.id,
        object: 'chat.completion.chunk',
        created: h.created,
        model: h.model,
        system_fingerprint: 'fp_44709d6fcb',
        choices: [{index: 0, delta, logprobs: null, finish_reason: finish}],
        usage: null,
    }) + '\n\n';
}

// [events before the delay, events after]
function sseReply(n) {
    const h = head(n);
    const p = pieces(n);
    const first = [chunk(h, {role: 'assistant', content: '', refusal: null}, null),
        chunk(h, {content: p[0]}, null)];
    const rest = p.slice(1).map((s) => chunk(h, {content: s}, null));
    rest.push(chunk(h, {}, 'stop'));
    rest.push('data: ' + JSON.stringify({
        id: h.id, object: 'chat.completion.chunk', created: h.created, model: h.model,
        choices: [], usage: {prompt_tokens: 31, completion_tokens: 170, total_tokens: 201},
    }) + '\n\n');
    rest.push('data: [DONE]\n\n');
    return [first, rest];
}

if (process.argv[2] === '--dump') {
    fs.writeFileSync(process.argv[4], content(Number(process.argv[3])));
    process.exit(0);
}

let counter = 0;
let connections = 0;
const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
        const q = req.url.indexOf('?');
        const path = q < 0 ? req.url : req.url.slice(0, q);
        if (req.method === 'GET' && path === '/stats') {
            const b = JSON.stringify({requests: counter, connections});
            res.writeHead(200, {'Content-Type': 'application/json', 'Content-Length': b.length});
            res.end(b);
            return;
        }
        if (req.method !== 'POST' || (path !== '/v1/chat/completions' && path !== '/bench/passthrough')) {
            res.writeHead(404, {'Content-Type': 'application/json', 'Content-Length': 2});
            res.end('{}');
            return;
        }
        const n = ++counter;
        const body = Buffer.concat(chunks).toString();
        if (!/"stream"\s*:\s*true/.test(body)) {
            const b = Buffer.from(jsonReply(n));
            res.writeHead(200, {'Content-Type': 'application/json', 'Content-Length': b.length});
            res.end(b);
            return;
        }
        const m = q < 0 ? null : /(?:^|&)delay_ms=(\d+)/.exec(req.url.slice(q + 1));
        const delay = m ? Number(m[1]) : 0;
        const [first, rest] = sseReply(n);
        res.writeHead(200, {'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache'});
        for (const e of first)
            res.write(e);
        const finish = () => {
            for (const e of rest)
                res.write(e);
            res.end();
        };
        if (delay > 0)
            setTimeout(finish, delay);
        else
            finish();
    });
});
server.on('connection', () => connections++);
server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
    console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
