// node bench/proxy/client.js PORT N PATH [1]: N sequential POSTs of the bench's chat request on one
// keep-alive connection (streamed when the last argument is 1); used by bench/proxy/instr.sh.
'use strict';
const http = require('http');

const [port, n, path, stream] = [+process.argv[2], +process.argv[3], process.argv[4],
    process.argv[5] === '1'];
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const body = JSON.stringify({
    model: 'gpt-4o',
    messages: [{ role: 'user', content: 'Write a Mastra agent' }],
    ...(stream ? { stream: true } : {}),
});
let done = 0;
function one() {
    if (done++ >= n) {
        agent.destroy();
        return;
    }
    const req = http.request({
        host: '127.0.0.1', port, path, method: 'POST', agent,
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench' },
    }, (res) => {
        if (res.statusCode !== 200) {
            console.error(`client: status ${res.statusCode}`);
            process.exit(1);
        }
        res.resume();
        res.on('end', one);
    });
    req.on('error', (e) => {
        console.error(`client: ${e.message}`);
        process.exit(1);
    });
    req.end(body);
}
one();
