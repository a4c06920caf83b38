// Fake Chat Completions upstream for the hold bench, run as a worker thread of bench/hold/hold.js
// (its own event loop, so the client's parsing does not delay its sends).
//
// POST /v1/chat/completions with `x-hold-case: N` (the index of a golden reply) and
// `x-hold-tag: TAG` streams reply N as chat.completion.chunk events at workerData.rate characters
// per second: a role chunk, then the content cut by text.js cutDeltas (seeded by the case name,
// so every mode and round sees the same cut), each delta written when it is due (timers re-aimed
// at the stream's start time, so lateness does not add up), then the finish chunk, the usage
// chunk and [DONE]. When a reply ends it posts {tag, sent} to the parent: the clock time at which
// each delta was written (process.hrtime, ms since workerData.origin, the same clock as the
// client's). Anything else: 404. Keep-alive; 127.0.0.1 only; closes when told to ('close').
'use strict';
const http = require('http');
const {parentPort, workerData} = require('worker_threads');
const {cutDeltas} = require('./text.js');

const {cases, rate, minLen, maxLen} = workerData;
const origin = BigInt(workerData.origin);
const now = () => Number(process.hrtime.bigint() - origin) / 1e6;
const plans = cases.map((c) => cutDeltas(c.input, c.name, minLen, maxLen, rate));

function chunk(id, delta, finish) {
    return 'data: ' + JSON.stringify({
        id, object: 'chat.completion.chunk', created: 1741569952, model: 'gpt-4o-2024-08-06',
        system_fingerprint: 'fp_hold', choices: [{index: 0, delta, logprobs: null,
            finish_reason: finish}], usage: null,
    }) + '\n\n';
}

function stream(res, n, tag) {
    const text = cases[n].input;
    const plan = plans[n];
    const id = `chatcmpl-hold-${tag}`;
    const sent = new Float64Array(plan.length);
    res.writeHead(200, {'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache'});
    res.write(chunk(id, {role: 'assistant', content: '', refusal: null}, null));
    const start = now();
    let k = 0;
    let gone = false;
    res.on('close', () => { gone = true; });
    const step = () => {
        if (gone)
            return;
        let out = '';
        const t = now();
        while (k < plan.length && start + plan[k].due <= t + 0.05) {
            const d = plan[k];
            out += chunk(id, {content: text.slice(d.off, d.off + d.len)}, null);
            sent[k++] = t;
        }
        if (out)
            res.write(out);
        if (k < plan.length) {
            setTimeout(step, Math.max(0, start + plan[k].due - now()));
            return;
        }
        res.write(chunk(id, {}, 'stop'));
        res.write('data: ' + JSON.stringify({id, object: 'chat.completion.chunk', created: 1741569952,
            model: 'gpt-4o-2024-08-06', choices: [],
            usage: {prompt_tokens: 40, completion_tokens: Math.ceil(text.length / 4),
                total_tokens: 40 + Math.ceil(text.length / 4)}}) + '\n\n');
        res.end('data: [DONE]\n\n');
        parentPort.postMessage({tag, start, sent, due: plan.map((d) => start + d.due)});
    };
    step();
}

const server = http.createServer({noDelay: true, keepAliveTimeout: 60000}, (req, res) => {
    req.resume();
    req.on('end', () => {
        const n = Number(req.headers['x-hold-case']);
        const tag = String(req.headers['x-hold-tag'] || '');
        if (req.method !== 'POST' || req.url !== '/v1/chat/completions' || !(n >= 0 && n < cases.length)) {
            res.writeHead(404, {'Content-Type': 'application/json', 'Content-Length': 2});
            res.end('{}');
            return;
        }
        stream(res, n, tag);
    });
});
server.listen(0, '127.0.0.1', () => parentPort.postMessage({port: server.address().port}));
parentPort.on('message', (m) => {
    if (m === 'close') {
        server.close();
        server.closeAllConnections();
        parentPort.close();
    }
});
