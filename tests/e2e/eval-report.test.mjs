// `astgate eval --html` in a real browser (issue 16): Debian's chromium, headless, driven by the
// pinned puppeteer-core, opens the page of a live run over the fake models (each without and with
// the rules' hints) from disk and checks that it loads with no console error and no request but the
// file itself, that each model's group holds its four bars (raw, corrected, and both with the hints)
// with heights proportional to the figures of its off and on rows in --json, n/a as a labelled gap,
// distinct colours named by the key and labels that are readable and do not overlap, and that the
// tables' numbers are those of --json from the same run.
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

    // Each model is one group of four bars: raw and corrected, then raw and corrected with the
    // hints, from its off and on rows of --json; per rule, one such group per rule and model.
    const modelNames = [...new Set(j.models.map((m) => m.model))];
    const arm = (model, hint) => j.models.find((m) => m.model === model && m.hint === hint) || null;
    const byModel = modelNames.map((model) => ({ name: model, off: arm(model, 'off'), on: arm(model, 'on') }));
    assert.ok(byModel.every((g) => g.off && g.on), 'a --hint both run has both arms of every model');
    const ruleIds = [...new Set(j.models.flatMap((m) => m.rules.map((x) => x.id)))];
    const byRule = ruleIds.flatMap((id) =>
        byModel.map((g) => ({ name: `${id} / ${g.name}`, off: g.off.rules.find((x) => x.id === id), on: g.on.rules.find((x) => x.id === id) })),
    );
    const SLOTS = [
        ['raw', 'off'],
        ['corrected', 'off'],
        ['raw', 'on'],
        ['corrected', 'on'],
    ];
    for (const [id, groups] of [
        ['chart-models', byModel],
        ['chart-rules', byRule],
    ]) {
        const chart = await page.$eval(`svg#${id}`, (svg) => {
            const num = (el, a) => Number(el.getAttribute(a));
            const box = (el) => {
                const r = el.getBoundingClientRect();
                return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
            };
            const label = (t) => ({ text: t.textContent.replace(/n\/a.*/s, 'n/a'), x: num(t, 'x'), y: num(t, 'y'), box: box(t), size: parseFloat(getComputedStyle(t).fontSize), fill: getComputedStyle(t).fill });
            const axis = svg.querySelector('line.axis');
            const grids = [...svg.querySelectorAll('line.grid')].map((l) => num(l, 'y1'));
            const groups = [...svg.querySelectorAll('g.bars')].map((g) => ({
                name: g.dataset.group,
                // the bars and the n/a gaps, in the order they stand
                slots: [...g.querySelectorAll('rect.bar, text.na')].map((el) =>
                    el.tagName === 'rect'
                        ? {
                              kind: 'bar',
                              series: el.dataset.series,
                              hint: el.dataset.hint,
                              hinted: el.classList.contains('hint'),
                              value: Number(el.dataset.value),
                              x: num(el, 'x'),
                              y: num(el, 'y'),
                              width: num(el, 'width'),
                              height: num(el, 'height'),
                              center: num(el, 'x') + num(el, 'width') / 2,
                              fill: getComputedStyle(el).fill,
                              shown: el.getBoundingClientRect().width > 0,
                          }
                        : { kind: 'na', series: el.dataset.series, hint: el.dataset.hint, center: num(el, 'x'), label: label(el) },
                ),
                labels: [...g.querySelectorAll('text.label')].map(label),
            }));
            const key = [...(svg.closest('div.chart')?.nextElementSibling?.querySelectorAll('span') ?? [])].map((s) => ({ cls: s.className, color: getComputedStyle(s).backgroundColor }));
            // drawn at its own size: a chart shrunk to fit would shrink its labels with it
            const scale = svg.getBoundingClientRect().width / num(svg, 'width');
            const texts = [...svg.querySelectorAll('text.label, text.na')].map(box);
            // the widest label there can be, in the labels' font: it must fit between two bars'
            // centres whatever the figures, not only this run's
            const probe = svg.querySelector('text.label').cloneNode();
            probe.textContent = '88.88%';
            svg.appendChild(probe);
            const widest = probe.getBBox().width;
            probe.remove();
            return { axisY: num(axis, 'y1'), topY: Math.min(...grids), groups, key, scale, texts, widest, bars: svg.querySelectorAll('rect.bar').length };
        });
        const perPct = (chart.axisY - chart.topY) / 100;
        assert.ok(perPct > 0, `${id}: the 100 % line is above the axis`);
        assert.ok(Math.abs(chart.scale - 1) < 0.01, `${id}: drawn at ${chart.scale} of its size`);
        assert.deepEqual(
            chart.groups.map((g) => g.name),
            groups.map((g) => g.name),
            `${id}: one group per model (per rule and model), the hinted arm inside it`,
        );
        let bars = 0;
        const fills = new Map();
        for (const [gi, g] of groups.entries()) {
            const seen = chart.groups[gi];
            assert.deepEqual(
                seen.slots.map((s) => [s.series, s.hint]),
                SLOTS,
                `${id}: ${g.name} holds raw, corrected, raw +hint, corrected +hint`,
            );
            const step = seen.slots[1].center - seen.slots[0].center;
            assert.ok(step > 0);
            assert.ok(chart.widest < step, `${id}: a label of ${chart.widest} px is wider than the ${step} px between bars`);
            for (const [k, slot] of seen.slots.entries()) {
                const [series, hint] = SLOTS[k];
                const what = `${id}: ${g.name} ${series}${hint === 'on' ? ' +hint' : ''}`;
                assert.ok(Math.abs(slot.center - seen.slots[0].center - k * step) < 0.01, `${what} stands in its place in the group`);
                const want = g[hint]?.[`${series}_accuracy_pct`] ?? null;
                if (want === null) {
                    assert.equal(slot.kind, 'na', `${what} is n/a: a gap, no bar`);
                    assert.equal(slot.label.text, 'n/a');
                    assert.ok(slot.label.box.right > slot.label.box.left && slot.label.size >= 10, `${what}: the n/a is readable`);
                    continue;
                }
                bars++;
                assert.equal(slot.kind, 'bar', `${what}: no bar for ${want} %`);
                assert.equal(slot.value, want, what);
                assert.ok(Math.abs(slot.height - want * perPct) < 0.01, `${what} bar is ${slot.height} px high for ${want} %`);
                assert.ok(Math.abs(slot.y + slot.height - chart.axisY) < 0.01, `${what} bar stands on the axis`);
                assert.ok(slot.shown && slot.width > 0);
                assert.equal(slot.hinted, hint === 'on', `${what}: hinted bars are marked`);
                const key = `${series} ${hint}`;
                if (!fills.has(key)) fills.set(key, slot.fill);
                assert.equal(slot.fill, fills.get(key), `${what}: one colour per kind of bar`);
                const label = seen.labels.find((l) => Math.abs(l.x - slot.center) < 0.01);
                assert.ok(label, `${what} has a label`);
                assert.equal(figure(label.text), want);
                assert.ok(label.y <= slot.y, `${what}: the label sits above its bar`);
                assert.ok(label.box.right > label.box.left && label.size >= 10, `${what}: the label is readable (${label.size} px)`);
            }
        }
        assert.equal(chart.bars, bars, `${id}: one bar per figure, none for n/a`);
        assert.equal(new Set(fills.values()).size, fills.size, `${id}: the kinds of bar have distinct colours (${[...fills].join(', ')})`);
        // the key names the four kinds, in the bars' colours
        assert.deepEqual(
            chart.key.map((k) => k.cls),
            ['raw', 'corrected', 'raw hint', 'corrected hint'],
        );
        for (const k of chart.key) {
            const [series, hint] = [k.cls.split(' ')[0], k.cls.includes('hint') ? 'on' : 'off'];
            const fill = fills.get(`${series} ${hint}`);
            if (fill) assert.equal(k.color, fill, `${id}: the key's ${k.cls} is the bars' colour`);
        }
        // no two labels overlap
        for (const [a, x] of chart.texts.entries()) {
            for (const y of chart.texts.slice(a + 1)) {
                const apart = x.right <= y.left || y.right <= x.left || x.bottom <= y.top || y.bottom <= x.top;
                assert.ok(apart, `${id}: two labels overlap: ${JSON.stringify([x, y])}`);
            }
        }
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
