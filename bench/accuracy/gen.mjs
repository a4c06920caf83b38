#!/usr/bin/env node
// Generates bench/accuracy/finetuned.jsonl: replies that mirror what a GPT-4.1-nano fine-tuned on
// older Mastra examples writes when asked for a Mastra agent. It pins the model it learned from
// the examples instead of itself: the legacy object form `model: { provider: 'OPEN_AI', name:
// 'gpt-4' }`, `openai('gpt-4o')`, the router string 'openai/gpt-4o'; some replies are right
// (gpt-4.1-nano), some carry no code at all, some are bare code without fences. Each reply sits in
// one of the four record formats `astgate eval` reads, in turn: a fine-tuning record, a Chat
// Completions object (some with n = 2), a Responses object, {"completion": ...}.
//
//   node bench/accuracy/gen.mjs > bench/accuracy/finetuned.jsonl
//
// Deterministic: a seeded generator (mulberry32), no clock, no randomness from the platform.

const SEED = 20250414;

function rng(seed) {
    let s = seed >>> 0;
    return () => {
        s = (s + 0x6d2b79f5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}
const rand = rng(SEED);
const pick = (a) => a[Math.floor(rand() * a.length)];

const FT_MODEL = 'ft:gpt-4.1-nano-2025-04-14:acme:mastra-agents:Bx7kQ2pL';
const SYSTEM = 'You are an expert in the Mastra TypeScript agent framework. Answer with working code.';

// what the agents are for: [variable, display name, instructions, tool]
const AGENTS = [
    ['weatherAgent', 'Weather Agent', 'You are a helpful weather assistant. Always ask for a location if none is given.', 'weatherTool'],
    ['supportAgent', 'Support Agent', 'You answer customer questions politely and escalate billing issues.', 'ticketTool'],
    ['researchAgent', 'Research Agent', 'You search the web and summarise sources with citations.', 'searchTool'],
    ['sqlAgent', 'SQL Agent', 'You turn questions into read-only SQL for the analytics database.', 'queryTool'],
    ['travelAgent', 'Travel Agent', 'You plan trips and compare flight options.', 'flightTool'],
    ['recipeAgent', 'Recipe Agent', 'You suggest recipes from the ingredients the user has.', 'pantryTool'],
    ['codeReviewer', 'Code Reviewer', 'You review pull requests and point out bugs and risky changes.', 'diffTool'],
    ['salesAgent', 'Sales Agent', 'You qualify leads and book demos.', 'crmTool'],
];

const PROMPTS = [
    (a) => `Create a Mastra agent called "${a[1]}".`,
    (a) => `How do I define ${a[0]} with Mastra? It should use ${a[3]}.`,
    (a) => `Write the agent file for a ${a[1].toLowerCase()} in my Mastra project.`,
    (a) => `Give me a minimal Mastra Agent for this: ${a[2]}`,
];

// the model line, per kind
const MODELS = {
    legacy: [
        `{\n    provider: 'OPEN_AI',\n    name: 'gpt-4',\n    toolChoice: 'auto',\n  }`,
        `{ provider: 'OPEN_AI', name: 'gpt-4' }`,
        `{\n    provider: 'OPEN_AI',\n    name: "gpt-4",\n  }`,
        `{ provider: 'OPEN_AI', name: 'gpt-4-turbo', toolChoice: 'auto' }`,
    ],
    call: [`openai('gpt-4o')`, `openai('gpt-4o-mini')`, `openai("gpt-4o")`, `openai.chat('gpt-4')`, `openai('gpt-4-turbo')`],
    router: [`'openai/gpt-4o'`, `'openai/gpt-4o-mini'`, `"openai/gpt-4o"`, `'openai/gpt-4'`],
    right: [`openai('gpt-4.1-nano')`, `'openai/gpt-4.1-nano'`, `{ provider: 'OPEN_AI', name: 'gpt-4.1-nano' }`],
};

function agentCode(a, kind, { inlineKey = false } = {}) {
    const model = pick(MODELS[kind]);
    const usesProvider = model.startsWith('openai');
    const lines = [];
    if (usesProvider) {
        lines.push(inlineKey ? `import { createOpenAI } from '@ai-sdk/openai';` : `import { openai } from '@ai-sdk/openai';`);
    }
    lines.push(`import { Agent } from '@mastra/core/agent';`);
    lines.push(`import { ${a[3]} } from '../tools/${a[3].replace(/Tool$/, '')}';`);
    lines.push('');
    if (usesProvider && inlineKey) {
        lines.push(`const openai = createOpenAI({ apiKey: 'sk-proj-REPLACE_ME' });`);
        lines.push('');
    }
    lines.push(`export const ${a[0]} = new Agent({`);
    lines.push(`  name: '${a[1]}',`);
    lines.push(`  instructions: '${a[2]}',`);
    lines.push(`  model: ${model},`);
    lines.push(`  tools: { ${a[3]} },`);
    lines.push(`});`);
    return lines.join('\n') + '\n';
}

const INTROS = [
    (a) => `Here's ${a[0]} using Mastra:`,
    (a) => `Sure! Below is a ${a[1].toLowerCase()} built with \`@mastra/core\`.`,
    () => 'You can define the agent like this:',
    (a) => `Create \`src/mastra/agents/${a[0]}.ts\`:`,
];
const OUTROS = [
    () => 'Register it in your `Mastra` instance under `agents` and run `mastra dev` to try it.',
    () => 'Make sure `OPENAI_API_KEY` is set in your `.env`.',
    (a) => `The agent can now call \`${a[3]}\` whenever it needs data.`,
    () => '',
];

function fenced(a, code) {
    const lang = pick(['ts', 'typescript', 'ts', 'tsx']);
    const outro = pick(OUTROS)(a);
    return `${pick(INTROS)(a)}\n\n\`\`\`${lang}\n${code}\`\`\`\n${outro ? '\n' + outro + '\n' : ''}`;
}

const PROSE = [
    'Mastra agents need three things: a name, instructions and a model. Install `@mastra/core`, create the agent in `src/mastra/agents`, and register it in your Mastra instance.',
    'Tools are defined with `createTool` and passed to the agent through its `tools` option; the agent decides when to call them from the tool descriptions.',
    'To give an agent memory, add `@mastra/memory` and pass a `Memory` instance. Threads and resources keep conversations apart.',
    'Workflows chain steps with `.then()`; use them when the order of operations must be fixed, and agents when the model should decide.',
    'Run `npx mastra dev` to open the playground at http://localhost:4111, where you can chat with every registered agent.',
    'Evals score agent output; start with the built-in answer relevancy metric and add your own later.',
];

function toolCode(a) {
    return [
        `import { createTool } from '@mastra/core/tools';`,
        `import { z } from 'zod';`,
        '',
        `export const ${a[3]} = createTool({`,
        `  id: '${a[3].replace(/Tool$/, '')}',`,
        `  description: 'Looks things up for the ${a[1].toLowerCase()}',`,
        `  inputSchema: z.object({ query: z.string() }),`,
        `  execute: async ({ context }) => {`,
        `    return { result: context.query };`,
        `  },`,
        `});`,
    ].join('\n') + '\n';
}

function twoAgents(a, b) {
    const first = agentCode(a, 'legacy');
    const second = agentCode(b, 'right').split('\n').filter((l) => !l.startsWith('import')).join('\n');
    return `Two agents, one per task:\n\n\`\`\`ts\n${first}${second.trimStart()}\`\`\`\n`;
}

// the mix, in order: [kind, count]; each reply draws an agent and a prompt
const PLAN = [
    ['legacy', 30],
    ['call', 24],
    ['router', 20],
    ['right', 24],
    ['prose', 10],
    ['tool', 6],
    ['two', 4],
    ['key', 6],
];

const replies = [];
for (const [kind, count] of PLAN) {
    for (let i = 0; i < count; i++) {
        const a = pick(AGENTS);
        const prompt = pick(PROMPTS)(a);
        let text;
        if (kind === 'prose') text = pick(PROSE);
        else if (kind === 'tool') text = fenced(a, toolCode(a));
        else if (kind === 'two') text = twoAgents(a, pick(AGENTS.filter((x) => x !== a)));
        else if (kind === 'key') text = fenced(a, agentCode(a, 'call', { inlineKey: true }));
        else {
            const code = agentCode(a, kind);
            text = i % 5 === 4 ? code : fenced(a, code); // every fifth one is bare code
        }
        replies.push({ kind, prompt, text });
    }
}

// shuffle (Fisher-Yates with the seeded generator) so formats and kinds mix
for (let i = replies.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [replies[i], replies[j]] = [replies[j], replies[i]];
}

const hex = () => Math.floor(rand() * 0xffffffff).toString(16).padStart(8, '0');
function usage(texts) {
    const completion = texts.reduce((n, t) => n + Math.ceil(t.length / 4), 0);
    return { prompt_tokens: 64, completion_tokens: completion, total_tokens: 64 + completion };
}

// one record a line, formats in turn; some chat objects carry two choices (n = 2)
const out = [];
for (let k = 0, rec = 0; k < replies.length; rec++) {
    const r = replies[k];
    const created = 1746000000 + rec * 37;
    switch (rec % 4) {
        case 0:
            out.push({
                messages: [
                    { role: 'system', content: SYSTEM },
                    { role: 'user', content: r.prompt },
                    { role: 'assistant', content: r.text },
                ],
            });
            k++;
            break;
        case 1: {
            const n = rec % 3 === 1 && k + 1 < replies.length ? 2 : 1;
            const choices = replies.slice(k, k + n);
            k += n;
            out.push({
                id: `chatcmpl-${hex()}${hex()}`,
                object: 'chat.completion',
                created,
                model: FT_MODEL,
                choices: choices.map((c, index) => ({
                    index,
                    message: { role: 'assistant', content: c.text, refusal: null, annotations: [] },
                    logprobs: null,
                    finish_reason: 'stop',
                })),
                usage: usage(choices.map((c) => c.text)),
                service_tier: 'default',
                system_fingerprint: null,
            });
            break;
        }
        case 2:
            out.push({
                id: `resp_${hex()}${hex()}${hex()}`,
                object: 'response',
                created_at: created,
                status: 'completed',
                model: FT_MODEL,
                output: [
                    {
                        id: `msg_${hex()}${hex()}`,
                        type: 'message',
                        status: 'completed',
                        role: 'assistant',
                        content: [{ type: 'output_text', text: r.text, annotations: [] }],
                    },
                ],
                usage: { input_tokens: 64, output_tokens: Math.ceil(r.text.length / 4) },
            });
            k++;
            break;
        default:
            out.push({ completion: r.text });
            k++;
    }
}

process.stdout.write(out.map((o) => JSON.stringify(o)).join('\n') + '\n');
