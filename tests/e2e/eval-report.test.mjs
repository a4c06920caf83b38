// `astgate eval --html` in a real browser (issue 16): Debian's chromium, headless, driven by the
// pinned puppeteer-core, opens the page of a live run over the fake models (each without and with
// the rules' hints: the hinted bars) from disk and checks that
// it loads with no console error and no request but the file itself, that every bar is there with a
// height proportional to its figure and a readable label, and that the table's numbers are those of
// --json from the same run.
//
// Chromium comes from scripts/deps.sh (as root). Missing, the test fails when it runs as root (the
// CI machine: deps.sh should have installed it) and is skipped with the reason otherwise, as
// tests/deploy does for podman. CHROMIUM=/path overrides where it is looked for.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer from 'puppeteer-core';
import { FakeModels, MODELS } from './fake-models.mjs';
import { BIN, NEEDS_PROXY, RULES, tmpDir, withTimeout } from './helpers.mjs';
import { runEval, assertClean, parseJson, PROMPTS } from './eval-helpers.mjs';

const CANDIDATES = process.env.CHROMIUM ? [process.env.CHROMIUM] : ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
const CHROMIUM = CANDIDATES.find((p) => fs.existsSync(p)) || null;
const ROOT_USER = typeof process.getuid === 'function' && process.getuid() === 0;
const SKIP = NEEDS_PROXY || (!CHROMIUM && !ROOT_USER ? `chromium is not installed (${CANDIDATES.join(', ')}), and installing it needs root: sudo apt-get install chromium` : false);

let fm;
let browser;
before(async () => {
    if (SKIP) return;
    fm = await FakeModels.start();
    // as root (CI) a missing chromium is a failure, loudly
    assert.ok(CHROMIUM, `chromium is not installed (${CANDIDATES.join(', ')}): scripts/deps.sh installs it as root`);
    browser = await withTimeout(
        puppeteer.launch({
            executablePath: CHROMIUM,
            headless: true,
            // root cannot use chromium's sandbox; the page is our own file and fetches nothing
            args: ROOT_USER ? ['--no-sandbox'] : [],
        }),
        60000,
        `launching ${CHROMIUM}`,
    );
});
after(async () => {
    if (browser) await browser.close();
    if (fm) await fm.close();
});

// A figure of the page ("100%", "66.66%", "+33.34 pp", "n/a") as --json has it (null for n/a).
function figure(text) {
    const t = text.trim();
    if (t === 'n/a') return null;
    const m = /^([+-]?\d+(?:\.\d+)?)(?:%| pp)$/.exec(t);
    assert.ok(m, `not a figure: ${JSON.stringify(text)}`);
    return Number(m[1]);
}

test('--html: the page loads from disk alone; bars, labels and table match --json', { skip: SKIP }, async () => {
    const dir = tmpDir();
    const prompts = path.join(dir, 'prompts.txt');
    fs.writeFileSync(prompts, PROMPTS.join('\n') + '\n');
    const html = path.join(dir, 'report.html');
    const r = await runEval(['--live', '--upstream', fm.url, '--model', MODELS.join(','), '--prompts', prompts, '-n', '2', '--rules', RULES, '--json', '--hint', 'both', '--html', html]);
    assertClean(r);
    assert.equal(r.code, 0, r.stderr);
    const j = parseJson(r);
    assert.equal(j.models.length, MODELS.length * 2, 'each model without and with the hint');
    const name = (m) => m.model + (m.hint === 'on' ? ' +hint' : '');

    const page = await browser.newPage();
    const url = pathToFileURL(html).href;
    const requests = [];
    const errors = [];
    page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warn') errors.push(`console.${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('requestfailed', (q) => errors.push(`request failed: ${q.url()}`));
    await page.setRequestInterception(true);
    page.on('request', (q) => {
        requests.push(q.url());
        if (q.url() === url) q.continue();
        else q.abort();
    });
    await withTimeout(page.goto(url, { waitUntil: 'load' }), 30000, `loading ${url}`);
    assert.deepEqual(requests, [url], 'the page asked for something besides itself');
    assert.deepEqual(errors, []);

    for (const [id, groups] of [
        ['chart-models', j.models.map((m) => ({ name: name(m), row: m, hint: m.hint }))],
        ['chart-rules', j.models[0].rules.flatMap((rule, k) => j.models.map((m) => ({ name: `${rule.id} / ${name(m)}`, row: m.rules[k], hint: m.hint })))],
    ]) {
        const chart = await page.$eval(`svg#${id}`, (svg) => {
            const num = (el, a) => Number(el.getAttribute(a));
            const axis = svg.querySelector('line.axis');
            const grids = [...svg.querySelectorAll('line.grid')].map((l) => num(l, 'y1'));
            const labels = [...svg.querySelectorAll('text.label, text.na')].map((t) => {
                const box = t.getBBox();
                return { text: t.textContent, x: num(t, 'x'), y: num(t, 'y'), w: box.width, h: box.height, size: parseFloat(getComputedStyle(t).fontSize), fill: getComputedStyle(t).fill };
            });
            const bars = [...svg.querySelectorAll('rect.bar')].map((b) => ({
                series: b.dataset.series,
                hinted: b.classList.contains('hint'),
                group: b.dataset.group,
                value: Number(b.dataset.value),
                x: num(b, 'x'),
                y: num(b, 'y'),
                width: num(b, 'width'),
                height: num(b, 'height'),
                shown: b.getBoundingClientRect().width > 0,
            }));
            return { axisY: num(axis, 'y1'), topY: Math.min(...grids), labels, bars };
        });
        const perPct = (chart.axisY - chart.topY) / 100;
        assert.ok(perPct > 0, `${id}: the 100 % line is above the axis`);
        let expected = 0;
        for (const g of groups) {
            for (const series of ['raw', 'corrected']) {
                const want = g.row[`${series}_accuracy_pct`];
                const bar = chart.bars.find((b) => b.group === g.name && b.series === series);
                if (want === null) {
                    assert.equal(bar, undefined, `${id}: ${g.name} ${series} is n/a and has no bar`);
                    continue;
                }
                expected++;
                assert.ok(bar, `${id}: no ${series} bar for ${g.name}`);
                assert.equal(bar.value, want, `${id}: ${g.name} ${series}`);
                assert.ok(Math.abs(bar.height - want * perPct) < 0.01, `${id}: ${g.name} ${series} bar is ${bar.height} px high for ${want} %`);
                assert.ok(Math.abs(bar.y + bar.height - chart.axisY) < 0.01, `${id}: ${g.name} ${series} bar stands on the axis`);
                assert.ok(bar.shown && bar.width > 0);
                assert.equal(bar.hinted, g.hint === 'on', `${id}: ${g.name} ${series}: hinted bars are marked`);
                const label = chart.labels.find((l) => Math.abs(l.x - (bar.x + bar.width / 2)) < 0.01 && l.text !== 'n/a');
                assert.ok(label, `${id}: ${g.name} ${series} has a label`);
                assert.equal(figure(label.text), want);
                assert.ok(label.y <= bar.y, `${id}: the label of ${g.name} ${series} sits above its bar`);
                assert.ok(label.w > 0 && label.h > 0 && label.size >= 10, `${id}: the label of ${g.name} ${series} is readable (${label.size} px)`);
            }
        }
        assert.equal(chart.bars.length, expected, `${id}: one bar per figure`);
        const nas = chart.labels.filter((l) => l.text === 'n/a').length;
        assert.equal(nas, groups.length * 2 - expected, `${id}: an n/a label per missing figure`);
    }

    const rows = await page.$$eval('table#models tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
    assert.deepEqual(
        rows.map((c) => ({
            model: c[0],
            hint: c[1],
            replies: Number(c[2]),
            with_code: Number(c[3]),
            raw_accuracy_pct: figure(c[4]),
            corrected_accuracy_pct: figure(c[5]),
            difference_pp: figure(c[6]),
            rewritten: Number(c[7]),
            flagged: Number(c[8]),
            unfixable: Number(c[9]),
        })),
        j.models.map((m) => ({
            model: m.model,
            hint: m.hint,
            replies: m.replies,
            with_code: m.with_code,
            raw_accuracy_pct: m.raw_accuracy_pct,
            corrected_accuracy_pct: m.corrected_accuracy_pct,
            difference_pp: m.difference_pp,
            rewritten: m.rewritten,
            flagged: m.flagged,
            unfixable: m.unfixable,
        })),
    );
    const ruleRows = await page.$$eval('table#rules tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
    assert.deepEqual(
        ruleRows.map((c) => [c[0], c[1], figure(c[2]), figure(c[3]), figure(c[4]), Number(c[5]), Number(c[6]), Number(c[7])]),
        j.models.flatMap((m) => m.rules.map((x) => [x.id, name(m), x.raw_accuracy_pct, x.corrected_accuracy_pct, x.difference_pp, x.rewritten, x.flagged, x.unfixable])),
    );
    // the stubborn model's rewrites, as diffs
    const diffs = await page.$$eval('.example.rewritten', (els) => els.map((e) => ({ title: e.querySelector('h3').textContent, del: e.querySelector('.del')?.textContent, add: e.querySelector('.add')?.textContent })));
    assert.ok(diffs.length > 0 && diffs.length <= 5);
    for (const d of diffs) {
        assert.match(d.title, /^stubborn, line \d+$/);
        assert.equal(d.del, "-  model: { provider: 'OPEN_AI', name: 'gpt-4' },");
        assert.equal(d.add, "+  model: { provider: 'OPEN_AI', name: 'gpt-4.1-nano' },");
    }
    await page.close();
});

test('--html in the browser: a hostile reply stays text (no script runs, no element injected)', { skip: SKIP }, async () => {
    const dir = tmpDir();
    const file = path.join(dir, 'hostile.jsonl');
    const code = "```ts\nimport { Agent } from '@mastra/core/agent';\n\nexport const a = new Agent({\n  name: 'A',\n  instructions: 'Help.',\n" +
        '  // "><img src=x onerror="document.title=\'pwned\'"></pre><script>document.title=\'pwned\'</script>\n' +
        "  model: openai('gpt-4o'),\n});\n```\n";
    const chat = (model) => JSON.stringify({ object: 'chat.completion', model, choices: [{ index: 0, message: { role: 'assistant', content: code } }] });
    fs.writeFileSync(file, chat('<svg onload="document.title=\'pwned\'">') + '\n' + chat('"><img src=x onerror=alert(1)>') + '\n');
    const html = path.join(dir, 'hostile.html');
    const r = await runEval(['--rules', RULES, '--html', html, file]);
    assertClean(r);
    assert.equal(r.code, 0, r.stderr);
    const page = await browser.newPage();
    const url = pathToFileURL(html).href;
    const requests = [];
    await page.setRequestInterception(true);
    page.on('request', (q) => {
        requests.push(q.url());
        if (q.url() === url) q.continue();
        else q.abort();
    });
    await withTimeout(page.goto(url, { waitUntil: 'load' }), 30000, `loading ${url}`);
    assert.deepEqual(requests, [url]);
    const seen = await page.evaluate(() => ({
        title: document.title,
        scripts: document.querySelectorAll('script').length,
        imgs: document.querySelectorAll('img').length,
        svgs: document.querySelectorAll('svg').length,
        models: [...document.querySelectorAll('table#models td.model')].map((td) => td.textContent),
        pre: [...document.querySelectorAll('.example pre')].map((p) => p.textContent).join('\n'),
    }));
    assert.equal(seen.title, 'astgate eval');
    assert.equal(seen.scripts, 0);
    assert.equal(seen.imgs, 0);
    assert.equal(seen.svgs, 2, 'only the two charts');
    assert.deepEqual(seen.models, ['<svg onload="document.title=\'pwned\'">', '"><img src=x onerror=alert(1)>']);
    assert.ok(seen.pre.includes("</pre><script>document.title='pwned'</script>"), 'the reply is shown as text');
    await page.close();
});
