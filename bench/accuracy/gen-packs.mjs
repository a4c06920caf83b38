#!/usr/bin/env node
// Generates the eval data sets of the three opt-in rule packs: replies a chat model writes when
// asked for AI SDK code (ai-sdk), OpenAI/Anthropic SDK code (openai-sdk), or code that talks to an
// API with a key (secrets). Each reply is markdown with ```ts blocks, or prose only; each data set
// mixes replies that already comply, replies the pack fixes, replies it can only flag, replies
// without code, and hard cases (the README of this folder lists them and what happens to each).
//
//   node bench/accuracy/gen-packs.mjs ai-sdk     > bench/accuracy/ai-sdk.jsonl
//   node bench/accuracy/gen-packs.mjs openai-sdk > bench/accuracy/openai-sdk.jsonl
//   node bench/accuracy/gen-packs.mjs secrets    > bench/accuracy/secrets.jsonl
//
// Deterministic: a seeded generator (mulberry32) picks names and wording, no clock. The keys in the
// secrets set are random strings of each provider's shape, made here, not real credentials.

const pack = process.argv[2];
const SEEDS = { 'ai-sdk': 20261207, 'openai-sdk': 20261208, secrets: 20261209 };
if (!(pack in SEEDS)) {
    process.stderr.write('usage: gen-packs.mjs ai-sdk|openai-sdk|secrets\n');
    process.exit(2);
}

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
const rand = rng(SEEDS[pack]);
const pick = (a) => a[Math.floor(rand() * a.length)];
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const chars = (n, al = ALNUM) => Array.from({ length: n }, () => pick([...al])).join('');

const ts = (code, lang = 'ts') => '```' + lang + '\n' + code.replace(/\n*$/, '\n') + '```';
const reply = (intro, code, outro) =>
    [intro, ts(code), outro].filter((x) => x !== undefined && x !== '').join('\n\n');

const TOPICS = [
    ['summarize', 'Summarize this support ticket in two sentences.'],
    ['classify', 'Classify the sentiment of the review as positive, neutral or negative.'],
    ['translate', 'Translate the text to French.'],
    ['extract', 'Extract the invoice number and the total.'],
    ['answer', 'Answer the question using the context.'],
    ['title', 'Suggest a title for the blog post.'],
];
const topic = () => pick(TOPICS);
const INTROS = [
    'Here is a minimal example:',
    "Sure! Here's how you can do it:",
    'You can do this in a few lines:',
    'Here is a complete, working version:',
    'This should work:',
];
const OUTROS = [
    'Run it with `npx tsx index.ts`.',
    'Make sure the API key is set in your environment before running it.',
    'Let me know if you want a streaming version.',
    '',
    'The function returns the model output as a string.',
];
const intro = () => pick(INTROS);
const outro = () => pick(OUTROS);

// ---------------------------------------------------------------------------------------- ai-sdk
function aiSdk() {
    const R = [];
    const add = (kind, prompt, text) => R.push({ kind, prompt, text });
    const oldModel = () => pick(['gpt-4o', 'gpt-4o-mini', 'gpt-4-turbo', 'gpt-3.5-turbo', 'o3-mini']);
    const other = () =>
        pick([
            ["import { anthropic } from '@ai-sdk/anthropic';", "anthropic('claude-3-5-sonnet-20241022')"],
            ["import { google } from '@ai-sdk/google';", "google('gemini-1.5-pro')"],
            ["import { mistral } from '@ai-sdk/mistral';", "mistral('mistral-large-latest')"],
            ["import { groq } from '@ai-sdk/groq';", "groq('llama-3.1-70b-versatile')"],
        ]);
    const gen = (fn, imp, model, extra = '') => {
        const [name, p] = topic();
        return `import { ${fn} } from 'ai';\n${imp}\n\nexport async function ${name}(input: string) {\n  const { text } = await ${fn}({\n    model: ${model},\n    system: '${p}',\n    prompt: input,${extra}\n  });\n  return text;\n}`;
    };
    const OAI = "import { openai } from '@ai-sdk/openai';";

    // compliant
    for (let i = 0; i < 4; i++)
        add('right', 'Show me generateText with the AI SDK.', reply(intro(), gen('generateText', OAI, "openai('gpt-4.1-nano')"), outro()));
    for (let i = 0; i < 2; i++)
        add('right', 'A Next.js route that streams text with the AI SDK.', reply(intro(), `import { streamText } from 'ai';\n\nexport async function POST(req: Request) {\n  const { prompt } = await req.json();\n  const result = streamText({ model: 'openai/gpt-4.1-nano', prompt });\n  return result.toTextStreamResponse();\n}`, outro()));
    for (let i = 0; i < 2; i++)
        add('right', 'Embed a list of documents with the AI SDK.', reply(intro(), `import { embedMany } from 'ai';\n${OAI}\n\nexport async function embedDocs(docs: string[]) {\n  const { embeddings } = await embedMany({\n    model: openai.embedding('text-embedding-3-small'),\n    values: docs,\n  });\n  return embeddings;\n}`, outro()));
    add('right', 'Build an agent with tools using the AI SDK.', reply(intro(), `import { ToolLoopAgent, tool } from 'ai';\n${OAI}\nimport { z } from 'zod';\n\nexport const agent = new ToolLoopAgent({\n  model: openai('gpt-4.1-nano'),\n  tools: {\n    weather: tool({\n      description: 'Get the weather for a city',\n      inputSchema: z.object({ city: z.string() }),\n      execute: async ({ city }) => ({ city, tempC: 21 }),\n    }),\n  },\n});`, outro()));

    // fixable
    for (let i = 0; i < 5; i++)
        add('openai-old', 'Use the AI SDK to call OpenAI.', reply(intro(), gen(pick(['generateText', 'streamText']), OAI, `openai('${oldModel()}')`), outro()));
    for (let i = 0; i < 5; i++) {
        const [imp, call] = other();
        add('other-provider', 'Use the AI SDK for this.', reply(intro(), gen('generateText', imp, call), outro()));
    }
    for (let i = 0; i < 3; i++)
        add('missing', 'Generate a typed object with the AI SDK and zod.', reply(intro(), `import { generateObject } from 'ai';\nimport { z } from 'zod';\n\nconst { object } = await generateObject({\n  schema: z.object({ title: z.string(), tags: z.array(z.string()).max(5) }),\n  prompt: '${topic()[1]}',\n});\nconsole.log(object);`, outro()));
    for (let i = 0; i < 3; i++)
        add('gateway', 'Stream text through the AI Gateway.', reply(intro(), `import { streamText } from 'ai';\n\nconst result = streamText({\n  model: '${pick(['anthropic/claude-sonnet-4', 'xai/grok-3', 'openai/gpt-4o', 'google/gemini-2.5-flash'])}',\n  prompt: '${topic()[1]}',\n});\nfor await (const delta of result.textStream) process.stdout.write(delta);`, outro()));
    for (let i = 0; i < 3; i++) {
        const [imp, model] = pick([
            [OAI, "openai.embedding('text-embedding-ada-002')"],
            [OAI, "openai.textEmbeddingModel('text-embedding-3-large')"],
            ["import { cohere } from '@ai-sdk/cohere';", "cohere.embedding('embed-english-v3.0')"],
        ]);
        add('embed-old', 'Compute an embedding with the AI SDK.', reply(intro(), `import { embed } from 'ai';\n${imp}\n\nconst { embedding } = await embed({\n  model: ${model},\n  value: 'sunny day at the beach',\n});`, outro()));
    }
    add('const', 'Reuse one model for several AI SDK calls.', reply(intro(), `import { generateText, streamText } from 'ai';\nimport { anthropic } from '@ai-sdk/anthropic';\n\nconst model = anthropic('claude-3-5-haiku-latest');\n\nexport const summarize = (text: string) => generateText({ model, prompt: \`Summarize: \${text}\` });\nexport const chat = (prompt: string) => streamText({ model, prompt });`, outro()));
    add('alias', 'AI SDK with aliased imports.', reply(intro(), `import { generateText as llm } from 'ai';\n${OAI}\n\nconst { text } = await llm({ model: openai.chat('gpt-4o'), prompt: 'Hello!' });`, outro()));
    add('namespace', 'AI SDK with a namespace import.', reply(intro(), `import * as ai from 'ai';\n${OAI}\n\nconst res = await ai.generateText({ model: openai.responses('gpt-4o-mini'), prompt: 'Hi' });\nconsole.log(res.text);`, outro()));
    add('wrap', 'Use reasoning middleware with the AI SDK.', reply(intro(), `import { generateText, wrapLanguageModel, extractReasoningMiddleware } from 'ai';\nimport { groq } from '@ai-sdk/groq';\n\nconst model = wrapLanguageModel({\n  model: groq('deepseek-r1-distill-llama-70b'),\n  middleware: extractReasoningMiddleware({ tagName: 'think' }),\n});\n\nconst { reasoningText, text } = await generateText({ model, prompt: 'How many r in strawberry?' });`, outro()));
    add('env', 'Make the model configurable.', reply(intro(), gen('generateText', OAI, "openai(process.env.OPENAI_MODEL ?? 'gpt-4o')"), outro()));
    add('agent', 'An AI SDK 5 agent.', reply(intro(), `import { Experimental_Agent as Agent, stepCountIs } from 'ai';\nimport { anthropic } from '@ai-sdk/anthropic';\n\nconst agent = new Agent({\n  model: anthropic('claude-sonnet-4-20250514'),\n  tools: { search },\n  stopWhen: stepCountIs(10),\n});\n\nconst result = await agent.generate({ prompt: 'Find the latest Node LTS.' });`, outro()));

    // hard cases
    add('hard-spread', 'Share options between AI SDK calls.', reply(intro(), `import { generateText } from 'ai';\nimport { baseOptions } from './llm-config';\n\nconst { text } = await generateText({ ...baseOptions, prompt: 'Write a tagline.' });`, 'The shared options live in `llm-config.ts`.'));
    add('hard-opts-const', 'Build the options first, then call the AI SDK.', reply(intro(), `import { generateText } from 'ai';\n${OAI}\n\nconst options = {\n  model: openai('gpt-4o'),\n  prompt: 'Write a haiku about autumn.',\n};\n\nconst { text } = await generateText(options);`, outro()));
    add('hard-split', 'Split the AI SDK example in two files.', `First the imports in \`llm.ts\`:\n\n${ts("import { generateText } from 'ai';\nimport { openai } from '@ai-sdk/openai';\nexport { generateText, openai };")}\n\nThen use it:\n\n${ts("const { text } = await generateText({ model: openai('gpt-4o'), prompt: 'Hi' });")}`);
    add('hard-client', 'Use the AI SDK in React.', reply(intro(), `'use client';\nimport { useChat } from '@ai-sdk/react';\n\nexport default function Chat() {\n  const { messages, sendMessage } = useChat();\n  return <div>{messages.map((m) => <p key={m.id}>{m.role}</p>)}</div>;\n}`, 'The model is chosen by the route handler, not the client.').replace('```ts', '```tsx'));
    add('hard-cutoff', 'Write a long AI SDK example.', 'Here is the full example:\n\n```ts\nimport { streamText } from \'ai\';\nimport { openai } from \'@ai-sdk/openai\';\n\nconst result = streamText({\n  model: openai(\'gpt-4o\'),\n  prompt: \'Tell me a long story about');
    add('hard-mastra', 'A Mastra agent, not the AI SDK.', reply(intro(), `import { Agent } from '@mastra/core/agent';\n${OAI}\n\nexport const helper = new Agent({ name: 'Helper', instructions: 'Help.', model: openai('gpt-4o') });`, 'This pack leaves Mastra agents to rules/mastra.yaml.'));

    // no code
    for (const p of [
        'The AI SDK is a TypeScript toolkit: `generateText` returns the whole answer, `streamText` streams it token by token.',
        'You do not need LangChain for this; the AI SDK handles tool calls and structured output on its own.',
        'Embeddings map text to vectors; compare them with cosine similarity to find related documents.',
        'Set `OPENAI_API_KEY` in `.env.local`; the OpenAI provider reads it automatically.',
    ])
        add('prose', 'Explain the AI SDK.', p);
    return R;
}

// ------------------------------------------------------------------------------------ openai-sdk
function openaiSdk() {
    const R = [];
    const add = (kind, prompt, text) => R.push({ kind, prompt, text });
    const oldModel = () => pick(['gpt-4o', 'gpt-4o-mini', 'gpt-4-turbo', 'gpt-3.5-turbo', 'gpt-4', 'o1-mini']);
    const claude = () => pick(['claude-3-opus-20240229', 'claude-3-5-sonnet-20241022', 'claude-sonnet-4-20250514', 'claude-3-haiku-20240307']);
    const chat = (model) => {
        const [name, p] = topic();
        return `import OpenAI from 'openai';\n\nconst openai = new OpenAI();\n\nexport async function ${name}(input: string) {\n  const completion = await openai.chat.completions.create({\n    ${model === null ? '' : `model: ${model},\n    `}messages: [\n      { role: 'system', content: '${p}' },\n      { role: 'user', content: input },\n    ],\n  });\n  return completion.choices[0].message.content;\n}`;
    };
    const responses = (model) => `import OpenAI from 'openai';\n\nconst client = new OpenAI();\n\nconst response = await client.responses.create({\n  ${model === null ? '' : `model: ${model},\n  `}input: '${topic()[1]}',\n});\nconsole.log(response.output_text);`;
    const messages = (model) => `import Anthropic from '@anthropic-ai/sdk';\n\nconst anthropic = new Anthropic();\n\nconst msg = await anthropic.messages.create({\n  ${model === null ? '' : `model: ${model},\n  `}max_tokens: 1024,\n  messages: [{ role: 'user', content: '${topic()[1]}' }],\n});\nconsole.log(msg.content);`;

    // compliant
    for (let i = 0; i < 3; i++) add('right', 'Call the OpenAI API from Node.', reply(intro(), chat("'gpt-4.1-nano'"), outro()));
    for (let i = 0; i < 2; i++) add('right', 'Use the Responses API.', reply(intro(), responses("'gpt-4.1-nano'"), outro()));
    add('right', 'Create embeddings with the OpenAI SDK.', reply(intro(), `import OpenAI from 'openai';\n\nconst openai = new OpenAI();\nconst res = await openai.embeddings.create({ model: 'text-embedding-3-small', input: docs });`, outro()));
    for (let i = 0; i < 2; i++) add('right', 'Call Claude from TypeScript.', reply(intro(), messages("'claude-3-5-haiku-latest'"), outro()));

    // fixable
    for (let i = 0; i < 7; i++) add('chat-old', 'Call the OpenAI API from Node.', reply(intro(), chat(`'${oldModel()}'`), outro()));
    for (let i = 0; i < 3; i++) add('responses-old', 'Use the Responses API.', reply(intro(), responses(`'${oldModel()}'`), outro()));
    for (let i = 0; i < 2; i++) add('missing', 'Use the Responses API.', reply(intro(), responses(null), outro()));
    add('missing', 'Call the OpenAI API from Node.', reply(intro(), chat(null), outro()));
    for (let i = 0; i < 5; i++) add('claude-old', 'Call Claude from TypeScript.', reply(intro(), messages(`'${claude()}'`), outro()));
    add('claude-missing', 'Call Claude from TypeScript.', reply(intro(), messages(null), outro()));
    add('claude-stream', 'Stream a Claude reply.', reply(intro(), `import Anthropic from '@anthropic-ai/sdk';\n\nconst client = new Anthropic();\n\nawait client.messages\n  .stream({\n    model: '${claude()}',\n    max_tokens: 1024,\n    messages: [{ role: 'user', content: 'Write a poem about the sea.' }],\n  })\n  .on('text', (text) => process.stdout.write(text));`, outro()));
    for (let i = 0; i < 2; i++) add('embed-old', 'Create embeddings with the OpenAI SDK.', reply(intro(), `import OpenAI from 'openai';\n\nconst openai = new OpenAI();\nconst { data } = await openai.embeddings.create({\n  model: '${pick(['text-embedding-ada-002', 'text-embedding-3-large'])}',\n  input: chunks,\n});`, outro()));
    add('parse', 'Structured outputs with zod.', reply(intro(), `import OpenAI from 'openai';\nimport { zodResponseFormat } from 'openai/helpers/zod';\nimport { z } from 'zod';\n\nconst Step = z.object({ explanation: z.string(), output: z.string() });\nconst openai = new OpenAI();\nconst completion = await openai.beta.chat.completions.parse({\n  model: 'gpt-4o-2024-08-06',\n  messages: [{ role: 'user', content: 'Solve 8x + 7 = -23' }],\n  response_format: zodResponseFormat(z.object({ steps: z.array(Step) }), 'math'),\n});`, outro()));
    add('stream', 'Stream chat completions.', reply(intro(), `import OpenAI from 'openai';\n\nconst openai = new OpenAI();\nconst stream = await openai.chat.completions.create({\n  model: \`${oldModel()}\`,\n  messages: [{ role: 'user', content: 'Count to 10.' }],\n  stream: true,\n});\nfor await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content || '');`, outro()));
    add('env', 'Make the model configurable.', reply(intro(), chat("process.env.OPENAI_MODEL || 'gpt-4o'"), outro()));
    add('const', 'Keep the model name in one place.', reply(intro(), `import OpenAI from 'openai';\n\nconst MODEL = 'gpt-4o';\nconst openai = new OpenAI();\n\nexport const ask = async (q: string) =>\n  (await openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: q }] })).choices[0].message.content;`, outro()));

    // hard cases
    add('hard-baseurl', 'Use OpenRouter with the OpenAI SDK.', reply(intro(), `import OpenAI from 'openai';\n\nconst client = new OpenAI({ baseURL: 'https://openrouter.ai/api/v1', apiKey: process.env.OPENROUTER_API_KEY });\nconst res = await client.chat.completions.create({\n  model: 'anthropic/claude-3.5-sonnet',\n  messages: [{ role: 'user', content: 'Hi' }],\n});`, 'OpenRouter speaks the OpenAI API, so the official SDK works with a different base URL.'));
    add('hard-groq', 'Use Groq from TypeScript.', reply(intro(), `import Groq from 'groq-sdk';\n\nconst groq = new Groq();\nconst chat = await groq.chat.completions.create({\n  model: 'llama-3.3-70b-versatile',\n  messages: [{ role: 'user', content: 'Explain fast inference.' }],\n});`, outro()));
    add('hard-fetch', 'Call the OpenAI REST API without the SDK.', reply(intro(), `const res = await fetch('https://api.openai.com/v1/chat/completions', {\n  method: 'POST',\n  headers: { Authorization: \`Bearer \${process.env.OPENAI_API_KEY}\`, 'Content-Type': 'application/json' },\n  body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Hi' }] }),\n});\nconst data = await res.json();`, 'No SDK needed: it is one POST request.'));
    add('hard-python', 'Call the OpenAI API.', 'In Python:\n\n```python\nfrom openai import OpenAI\nclient = OpenAI()\nr = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])\n```');
    add('hard-curl', 'Test the API from the shell.', '```bash\ncurl https://api.openai.com/v1/responses \\\n  -H "Authorization: Bearer $OPENAI_API_KEY" \\\n  -H "Content-Type: application/json" \\\n  -d \'{"model": "gpt-4o", "input": "Hi"}\'\n```');
    add('hard-twilio', 'Send an SMS when the job is done.', reply(intro(), `import twilio from 'twilio';\n\nconst client = twilio(process.env.TWILIO_ACCOUNT_SID, process.env.TWILIO_AUTH_TOKEN);\nawait client.messages.create({ body: 'Job done', from: process.env.TWILIO_FROM, to: '+15558675310' });`, outro()));
    add('hard-param', 'Let the caller pick the model.', reply(intro(), `import OpenAI from 'openai';\n\nconst openai = new OpenAI();\n\nexport async function complete(model: string, prompt: string) {\n  const r = await openai.chat.completions.create({ model, messages: [{ role: 'user', content: prompt }] });\n  return r.choices[0].message.content;\n}`, outro()));

    for (const p of [
        'The Chat Completions API takes a list of messages; the Responses API takes `input` and keeps state with `previous_response_id`.',
        'Rate limits depend on your usage tier; retry with exponential backoff on 429.',
        'Claude needs `max_tokens` on every request; OpenAI models do not.',
        'Use `response_format` with a JSON schema to get structured output.',
    ])
        add('prose', 'Explain the API.', p);
    return R;
}

// --------------------------------------------------------------------------------------- secrets
function secrets() {
    const R = [];
    const add = (kind, prompt, text) => R.push({ kind, prompt, text });
    const B = ALNUM + '_-';
    const key = {
        openai: () => 'sk-proj-' + chars(74, B) + 'T3BlbkFJ' + chars(74, B),
        legacy: () => 'sk-' + chars(48),
        anthropic: () => 'sk-ant-api03-' + chars(93, B) + 'AA',
        awsId: () => 'AKIA' + chars(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'),
        awsSecret: () => chars(40, ALNUM + '/+'),
        github: () => 'ghp_' + chars(36),
        google: () => 'AIza' + chars(35, B),
        stripe: () => 'sk_live_' + chars(24),
    };

    // compliant
    add('right', 'Connect to OpenAI from Node.', reply(intro(), `import OpenAI from 'openai';\n\nconst openai = new OpenAI({ apiKey: process.env.OPENAI_API_KEY });`, 'Keep the key in `.env`, never in the code.'));
    add('right', 'Set up the AWS S3 client.', reply(intro(), `import { S3Client } from '@aws-sdk/client-s3';\n\n// credentials come from the default provider chain (env, profile, role)\nexport const s3 = new S3Client({ region: process.env.AWS_REGION ?? 'us-east-1' });`, outro()));
    add('right', 'Configure the Anthropic client.', reply(intro(), `import Anthropic from '@anthropic-ai/sdk';\n\nconst anthropic = new Anthropic({ apiKey: process.env['ANTHROPIC_API_KEY'] });`, outro()));
    add('placeholder', 'Show me how to pass the API key.', reply(intro(), `import OpenAI from 'openai';\n\nconst openai = new OpenAI({\n  apiKey: 'sk-...', // replace with your key, or better: use process.env.OPENAI_API_KEY\n});`, outro()));
    add('placeholder', 'How do I authenticate to GitHub?', reply(intro(), `import { Octokit } from '@octokit/rest';\n\nconst octokit = new Octokit({ auth: 'YOUR_GITHUB_TOKEN' });`, 'Create a token under Settings → Developer settings.'));
    add('placeholder', 'AWS credentials in code?', reply(intro(), `const credentials = {\n  accessKeyId: 'AKIAIOSFODNN7EXAMPLE',\n  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',\n};`, "These are AWS's documentation keys; never commit real ones."));
    add('right', 'Run git from Node safely.', reply(intro(), `import { execFile } from 'node:child_process';\n\nexecFile('git', ['log', '--oneline', '-n', '5', branch], (err, stdout) => {\n  if (err) throw err;\n  console.log(stdout);\n});`, outro()));
    add('right', 'Fetch the GitHub user.', reply(intro(), `const res = await fetch('https://api.github.com/user', {\n  headers: { Authorization: \`Bearer \${process.env.GITHUB_TOKEN}\` },\n});`, outro()));

    // fixable: a key of a known shape
    for (let i = 0; i < 4; i++)
        add('openai-key', 'Connect to OpenAI from Node.', reply(intro(), `import OpenAI from 'openai';\n\nconst openai = new OpenAI({\n  apiKey: '${pick([key.openai, key.legacy])()}',\n});\n\nconst r = await openai.responses.create({ model: 'gpt-4.1-nano', input: 'Hi' });`, outro()));
    for (let i = 0; i < 3; i++)
        add('anthropic-key', 'Configure the Anthropic client.', reply(intro(), `import Anthropic from '@anthropic-ai/sdk';\n\nconst anthropic = new Anthropic({ apiKey: "${key.anthropic()}" });`, outro()));
    for (let i = 0; i < 3; i++)
        add('aws-keys', 'Upload a file to S3.', reply(intro(), `import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3';\n\nconst s3 = new S3Client({\n  region: 'us-east-1',\n  credentials: {\n    accessKeyId: '${key.awsId()}',\n    secretAccessKey: '${key.awsSecret()}',\n  },\n});\n\nawait s3.send(new PutObjectCommand({ Bucket: 'reports', Key: 'q3.pdf', Body: file }));`, outro()));
    for (let i = 0; i < 3; i++)
        add('github-token', 'Call the GitHub API.', reply(intro(), `const res = await fetch('https://api.github.com/repos/acme/app/issues', {\n  headers: {\n    Authorization: ${pick(['`Bearer ' + key.github() + '`', "'token " + key.github() + "'", "'Bearer " + key.github() + "'"])},\n    Accept: 'application/vnd.github+json',\n  },\n});`, outro()));
    for (let i = 0; i < 2; i++)
        add('google-key', 'Use Gemini from Node.', reply(intro(), `import { GoogleGenerativeAI } from '@google/generative-ai';\n\nconst genAI = new GoogleGenerativeAI('${key.google()}');\nconst model = genAI.getGenerativeModel({ model: 'gemini-1.5-flash' });`, outro()));
    add('const-key', 'Call the OpenAI REST API with fetch.', reply(intro(), `const OPENAI_API_KEY = '${key.legacy()}';\n\nconst res = await fetch('https://api.openai.com/v1/models', {\n  headers: { Authorization: \`Bearer \${OPENAI_API_KEY}\` },\n});`, outro()));
    add('bearer', 'Call the OpenAI REST API with fetch.', reply(intro(), `const res = await fetch('https://api.openai.com/v1/models', {\n  headers: { Authorization: 'Bearer ${key.openai()}' },\n});`, outro()));

    // flagged: no environment name fits, or dangerous code
    for (let i = 0; i < 2; i++)
        add('unknown-key', 'Charge a card with Stripe.', reply(intro(), `import Stripe from 'stripe';\n\nconst stripe = new Stripe({ apiKey: '${key.stripe()}' });`, outro()));
    add('unknown-key', 'Sign a JWT.', reply(intro(), `import jwt from 'jsonwebtoken';\n\nconst JWT_SECRET = '${chars(32, '0123456789abcdef')}';\nexport const sign = (payload: object) => jwt.sign(payload, JWT_SECRET, { expiresIn: '1h' });`, outro()));
    for (let i = 0; i < 2; i++)
        add('eval', 'Evaluate a math expression from the user.', reply(intro(), `app.post('/calc', (req, res) => {\n  const result = ${pick(['eval(req.body.expr)', "new Function('return ' + req.body.expr)()"])};\n  res.json({ result });\n});`, 'Validate the input first!'));
    for (let i = 0; i < 3; i++)
        add('exec', 'Run a shell command with the user input.', reply(intro(), `import { ${pick(['exec', 'execSync'])} as run } from 'node:child_process';\n\nexport function convert(input: string, output: string) {\n  return run(\`ffmpeg -i \${input} \${output}\`);\n}`, outro()));

    // hard cases
    add('hard-comment', 'Where do I put my key?', reply(intro(), `import OpenAI from 'openai';\n\n// key: ${key.legacy()}\nconst openai = new OpenAI();`, outro()));
    add('hard-url', 'Call the Maps API.', reply(intro(), `const res = await fetch('https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key=${key.google()}');`, outro()));
    add('hard-concat', 'Connect to OpenAI from Node.', reply(intro(), `import OpenAI from 'openai';\n\nconst openai = new OpenAI({ apiKey: 'sk-proj-' + '${chars(60, B)}' });`, outro()));
    add('hard-env', 'Write the .env file.', '```bash\nOPENAI_API_KEY=' + key.legacy() + '\n```\n\nThen load it with `dotenv`.');
    add('hard-dotenv', 'Load the key from .env.', reply(intro(), `import 'dotenv/config';\nimport OpenAI from 'openai';\n\nconst openai = new OpenAI({ apiKey: process.env.OPENAI_API_KEY! });`, outro()));
    add('hard-regex', 'Detect leaked keys in logs.', reply(intro(), `const OPENAI_KEY = /sk-(proj-)?[A-Za-z0-9_-]{20,}/g;\nexport const redact = (line: string) => line.replace(OPENAI_KEY, 'sk-***');`, outro()));
    add('hard-exec-const', 'Run a fixed command.', reply(intro(), `import { execSync } from 'node:child_process';\n\nconst version = execSync('node --version').toString().trim();`, outro()));

    for (const p of [
        'Never commit API keys. Use environment variables or a secrets manager such as AWS Secrets Manager or Doppler.',
        'Rotate the key in the OpenAI dashboard if it was ever pushed to a public repository.',
        '`eval` runs arbitrary code; parse the expression with a small grammar instead.',
        'Use `execFile` or `spawn` with an argument array, so the shell never interprets user input.',
    ])
        add('prose', 'Security advice.', p);
    return R;
}

const replies = { 'ai-sdk': aiSdk, 'openai-sdk': openaiSdk, secrets }[pack]();

// shuffle (Fisher-Yates with the seeded generator) so kinds and formats mix
for (let i = replies.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [replies[i], replies[j]] = [replies[j], replies[i]];
}

// one record a line, in turn: a fine-tuning record, a Chat Completions object, {"completion"}
const SYSTEM = 'You are a helpful TypeScript assistant. Answer with working code.';
const MODEL = 'gpt-4.1-nano-2025-04-14';
const hex = () => Math.floor(rand() * 0xffffffff).toString(16).padStart(8, '0');
const out = replies.map((r, rec) => {
    switch (rec % 3) {
        case 0:
            return {
                messages: [
                    { role: 'system', content: SYSTEM },
                    { role: 'user', content: r.prompt },
                    { role: 'assistant', content: r.text },
                ],
            };
        case 1:
            return {
                id: `chatcmpl-${hex()}${hex()}`,
                object: 'chat.completion',
                created: 1765000000 + rec * 41,
                model: MODEL,
                choices: [
                    {
                        index: 0,
                        message: { role: 'assistant', content: r.text, refusal: null, annotations: [] },
                        logprobs: null,
                        finish_reason: r.kind === 'hard-cutoff' ? 'length' : 'stop',
                    },
                ],
            };
        default:
            return { completion: r.text };
    }
});
process.stdout.write(out.map((o) => JSON.stringify(o)).join('\n') + '\n');
if (process.env.GEN_PACKS_KINDS)
    // the kind of each line, for the README's tables: GEN_PACKS_KINDS=1 node gen-packs.mjs PACK
    process.stderr.write(replies.map((r, i) => `${i + 1} ${r.kind}`).join('\n') + '\n');
