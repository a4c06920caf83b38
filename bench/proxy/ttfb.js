#!/usr/bin/env node
// Time to the first prose byte of a streamed reply, for bench/run-proxy.sh.
//
//   node ttfb.js N MARKER URL...
//
// Sends N streamed chat completion requests to each URL, one after the other and the URLs in
// turn (so a burst of load on the machine hits them alike), each on a new connection (as curl
// does), and prints one line per URL with the medians in microseconds:
//   TTFB URL head_us prose_us end_us
// head: the response head arrived; prose: the body so far holds MARKER (a word of the first
// prose sentence); end: the reply ended. Exits 1 when a reply is not 200 or lacks MARKER.
'use strict';
const http = require('http');

const [nArg, marker, ...urls] = process.argv.slice(2);
const n = Number(nArg);
const body = JSON.stringify({
    model: 'gpt-4o',
    stream: true,
    messages: [{role: 'user', content: 'Write a Mastra agent in TypeScript'}],
});

function once(url) {
    return new Promise((resolve, reject) => {
        const t0 = process.hrtime.bigint();
        let head = 0n, prose = 0n, seen = '';
        const req = http.request(url, {
            method: 'POST',
            agent: false,
            headers: {'Content-Type': 'application/json', 'Content-Length': body.length},
        }, (res) => {
            head = process.hrtime.bigint();
            if (res.statusCode !== 200)
                reject(new Error(`status ${res.statusCode}`));
            res.setEncoding('utf8');
            res.on('data', (d) => {
                if (prose)
                    return;
                seen += d;
                if (seen.includes(marker))
                    prose = process.hrtime.bigint();
            });
            res.on('end', () => {
                if (!prose)
                    reject(new Error(`no "${marker}" in the reply`));
                const us = (t) => Number(t - t0) / 1000;
                resolve([us(head), us(prose), us(process.hrtime.bigint())]);
            });
        });
        req.on('error', reject);
        req.end(body);
    });
}

function median(v) {
    const s = [...v].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

(async () => {
    const rows = urls.map(() => []);
    for (let i = 0; i < n; i++)
        for (let u = 0; u < urls.length; u++)
            rows[u].push(await once(urls[u]));
    urls.forEach((url, u) => {
        const col = (k) => median(rows[u].map((r) => r[k])).toFixed(1);
        console.log(`TTFB ${url} ${col(0)} ${col(1)} ${col(2)}`);
    });
})().catch((e) => {
    console.error(`ttfb: ${e.message}`);
    process.exit(1);
});
