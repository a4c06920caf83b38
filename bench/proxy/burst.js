#!/usr/bin/env node
// A fixed number of requests at a fixed concurrency, for bench/run-proxy-tls.sh.
//
//   node burst.js URL N C [keepalive]
//
// Sends N POSTs of the bench's (non-streamed) chat request to URL, C at a time; with keepalive
// (1) the C client connections are kept and reused, otherwise (0, the default) every request
// opens its own connection (a cold burst: N = C = 32). Every reply must be 200. Prints one line
// (latencies in microseconds, nearest-rank percentiles):
//   RESULT n p50_us p90_us p99_us max_us duration_us
'use strict';
const http = require('http');

const [url, nArg, cArg, kaArg] = process.argv.slice(2);
const n = Number(nArg);
const c = Number(cArg);
const agent = kaArg === '1' ? new http.Agent({keepAlive: true, maxSockets: c}) : false;
const body = JSON.stringify({
    model: 'gpt-4o',
    messages: [{role: 'user', content: 'Write a Mastra agent in TypeScript that answers questions about orders'}],
});
const lat = [];
let started = 0;
let failed = null;

function one() {
    return new Promise((resolve) => {
        const t0 = process.hrtime.bigint();
        const req = http.request(url, {
            method: 'POST',
            agent,
            headers: {
                'Content-Type': 'application/json',
                'Content-Length': Buffer.byteLength(body),
                Authorization: 'Bearer sk-bench',
            },
        }, (res) => {
            if (res.statusCode !== 200)
                failed = failed || new Error(`status ${res.statusCode}`);
            res.resume();
            res.on('end', () => {
                lat.push(Number(process.hrtime.bigint() - t0) / 1000);
                resolve();
            });
        });
        req.on('error', (e) => {
            failed = failed || e;
            resolve();
        });
        req.end(body);
    });
}

async function lane() {
    while (started < n && !failed) {
        started++;
        await one();
    }
}

(async () => {
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({length: c}, lane));
    const dur = Number(process.hrtime.bigint() - t0) / 1000;
    if (agent)
        agent.destroy();
    if (failed) {
        console.error(`burst: ${failed.message}`);
        process.exit(1);
    }
    lat.sort((a, b) => a - b);
    const pct = (p) => lat[Math.max(0, Math.ceil(lat.length * p / 100) - 1)];
    console.log(`RESULT ${lat.length} ${pct(50).toFixed(0)} ${pct(90).toFixed(0)} ` +
        `${pct(99).toFixed(0)} ${lat[lat.length - 1].toFixed(0)} ${dur.toFixed(0)}`);
})();
