// A fake Chat Completions upstream whose models behave like those of the experiment that motivates
// astgate (issue 16): asked for a Mastra agent,
//   steady    writes the required model, openai('gpt-4.1-nano'), every time;
//   stubborn  writes model: { provider: 'OPEN_AI', name: 'gpt-4' } (the wrong name) unless the
//             request's system or developer messages show the required value 'gpt-4.1-nano' (an
//             example in the prompt: the one thing that moved the real model), then writes it right;
//   prose     answers in words, without code.
// Deterministic: the reply depends only on the model and the request. Streamed (SSE chunks) when
// the request says "stream": true, one JSON object otherwise. Listens on 127.0.0.1, port 0.
//
//   const fm = await FakeModels.start();  ... fm.url, fm.requests (parsed bodies) ...
//   await fm.close();

import http from 'node:http';

export const REQUIRED = 'gpt-4.1-nano';
export const MODELS = ['steady', 'stubborn', 'prose'];

const agent = (model) =>
    "Here is the agent:\n\n```ts\nimport { Agent } from '@mastra/core/agent';\n" +
    (model.startsWith('openai(') ? "import { openai } from '@ai-sdk/openai';\n" : '') +
    "\nexport const weatherAgent = new Agent({\n  name: 'Weather Agent',\n" +
    "  instructions: 'You help with the weather.',\n" +
    `  model: ${model},\n});\n\`\`\`\n`;

// The text of a message's content (a string, or text parts).
function text(content) {
    if (typeof content === 'string') return content;
    if (Array.isArray(content)) return content.map((p) => (typeof p?.text === 'string' ? p.text : '')).join('');
    return '';
}

// The reply of model to a request body, or null for an unknown model.
export function reply(model, body) {
    if (model === 'steady') return agent(`openai('${REQUIRED}')`);
    if (model === 'prose') return 'A Mastra agent takes a name, instructions and a model; pick the model your team uses.';
    if (model === 'stubborn') {
        const shown = (body.messages || []).some(
            (m) => (m?.role === 'system' || m?.role === 'developer') && text(m.content).includes(REQUIRED),
        );
        return agent(`{ provider: 'OPEN_AI', name: '${shown ? REQUIRED : 'gpt-4'}' }`);
    }
    return null;
}

export class FakeModels {
    static async start() {
        const fm = new FakeModels();
        await new Promise((resolve, reject) => {
            fm.server.once('error', reject);
            fm.server.listen(0, '127.0.0.1', resolve);
        });
        fm.url = `http://127.0.0.1:${fm.server.address().port}`;
        return fm;
    }

    constructor() {
        this.requests = [];
        this.server = http.createServer((req, res) => this.handle(req, res));
    }

    handle(req, res) {
        const chunks = [];
        req.on('data', (d) => chunks.push(d));
        req.on('end', () => {
            let body;
            try {
                body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
                return this.error(res, 400, 'the body is not JSON');
            }
            this.requests.push(body);
            if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) return this.error(res, 404, `no route ${req.url}`);
            const content = reply(body.model, body);
            if (content === null) return this.error(res, 404, `The model \`${body.model}\` does not exist`);
            const n = this.requests.length;
            const base = { id: `chatcmpl-fake${n}`, created: 1765000000, model: body.model };
            if (body.stream === true) {
                res.writeHead(200, { 'content-type': 'text/event-stream' });
                const chunk = (delta, finish) =>
                    `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
                let out = chunk({ role: 'assistant', content: '' }, null);
                for (let i = 0; i < content.length; i += 40) out += chunk({ content: content.slice(i, i + 40) }, null);
                res.end(out + chunk({}, 'stop') + 'data: [DONE]\n\n');
                return;
            }
            const answer = {
                ...base,
                object: 'chat.completion',
                choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, finish_reason: 'stop' }],
                usage: { prompt_tokens: 20, completion_tokens: 60, total_tokens: 80 },
            };
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify(answer));
        });
    }

    error(res, status, message) {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message, type: 'invalid_request_error', code: null } }));
    }

    async close() {
        this.server.closeAllConnections?.();
        await new Promise((resolve) => this.server.close(resolve));
    }
}

// `node tests/e2e/fake-models.mjs [PORT]`: runs the fake on its own (for the README's
// reproduction) and prints its URL; SIGINT or SIGTERM stops it.
if (process.argv[1] && import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1]).href) {
    const port = Number(process.argv[2] || 0);
    const fm = new FakeModels();
    await new Promise((resolve, reject) => {
        fm.server.once('error', reject);
        fm.server.listen(port, '127.0.0.1', resolve);
    });
    console.log(`http://127.0.0.1:${fm.server.address().port}`);
    const stop = () => fm.close().then(() => process.exit(0));
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
}
