/* Benchmark: the rewrite engine next to tree-sitter's bare parse of the same code blocks, over a
 * corpus of replies held in memory. Engine and parse passes alternate; figures are medians of
 * repeated samples (the machines are shared and noisy, so only side-by-side ratios mean much). */
#include "fence.h"
#include "lang.h"
#include "rewrite.h"
#include "tsalloc.h"
#include "rules.h"

#include <errno.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_BLOCKS 256

typedef struct blk {
    uint32_t start, end; /* code bytes in the reply */
    ag_lang_t lang;
} blk_t;

typedef struct reply {
    const char *path;
    ag_buf_t text;
    blk_t *blocks; /* what the engine would consider: TS-family fences, or the bare reply */
    uint32_t nblocks;
    uint32_t parsed;   /* blocks the engine parsed (res.parsed) */
    uint32_t rewrites; /* edits the engine applied */
    uint64_t eng_ns;   /* engine time in the current sample */
    uint64_t parse_ns; /* bare parse time in the current sample */
} reply_t;

typedef struct sample {
    uint64_t eng_all, parse_all;   /* ns over all replies, for the sample's passes */
    uint64_t eng_sub, parse_sub;   /* ns over the replies the engine parses */
    uint64_t eng_full, parse_full; /* ns over the replies whose every block the engine parses */
    uint64_t res_parse, res_match, res_splice; /* engine's own split, all replies */
} sample_t;

typedef struct bench {
    reply_t *r;
    uint32_t n;
    ag_engine_t *engine;
    TSParser *parser[AG_LANG_COUNT];
    ag_buf_t out;
    uint32_t iters; /* corpus passes per sample */
    uint32_t reps;  /* samples */
} bench_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static _Noreturn void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_rewrite: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

/* The blocks ag_engine_rewrite would look at, with the default fence languages and bare replies
 * on (as the CLI runs it). */
static void find_blocks(reply_t *rp, const ag_fence_langs_t *langs)
{
    ag_block_t *found = ag_xmalloc(MAX_BLOCKS * sizeof(*found));
    uint32_t nf = 0;
    ag_str_t text = ag_buf_str(&rp->text);
    /* AG_ETOOBIG with nf == MAX_BLOCKS: the first blocks, as the engine takes them */
    int rc = ag_fence_find(text, found, MAX_BLOCKS, &nf);
    if (rc != AG_OK && rc != AG_ETOOBIG)
        nf = 0;
    rp->blocks = ag_xcalloc(nf ? nf : 1, sizeof(*rp->blocks));
    rp->nblocks = 0;
    for (uint32_t i = 0; i < nf; i++) {
        int l = ag_fence_classify(&found[i], langs);
        if (l < 0)
            continue;
        rp->blocks[rp->nblocks++] = (blk_t){found[i].start, found[i].end, (ag_lang_t)l};
    }
    if (nf == 0 && ag_engine_bare_start(text, NULL))
        rp->blocks[rp->nblocks++] = (blk_t){0, (uint32_t)text.len, AG_LANG_TS};
    free(found);
}

static void engine_one(bench_t *b, reply_t *rp, ag_result_t *res)
{
    if (ag_engine_rewrite(b->engine, ag_buf_str(&rp->text), &b->out, res) != AG_OK)
        die("engine output too big", rp->path);
    ag_buf_reset(&b->out);
}

/* One pass of the engine over the corpus; per-reply times go into r[i].eng_ns. noinline keeps
 * the function visible to callgrind --toggle-collect. */
__attribute__((noinline)) static void engine_pass(bench_t *b, sample_t *s)
{
    ag_result_t res;
    for (uint32_t i = 0; i < b->n; i++) {
        reply_t *rp = &b->r[i];
        uint64_t t0 = now_ns();
        engine_one(b, rp, &res);
        rp->eng_ns += now_ns() - t0;
        s->res_parse += res.parse_ns;
        s->res_match += res.match_ns;
        s->res_splice += res.splice_ns;
    }
}

/* One pass of tree-sitter alone over the same blocks: parse, delete the tree. */
__attribute__((noinline)) static void parse_pass(bench_t *b)
{
    for (uint32_t i = 0; i < b->n; i++) {
        reply_t *rp = &b->r[i];
        uint64_t t0 = now_ns();
        for (uint32_t k = 0; k < rp->nblocks; k++) {
            const blk_t *bk = &rp->blocks[k];
            TSParser *p = b->parser[bk->lang];
            TSTree *t =
                ts_parser_parse_string(p, NULL, rp->text.ptr + bk->start, bk->end - bk->start);
            if (t == NULL)
                die("parse failed", rp->path);
            ts_tree_delete(t);
        }
        rp->parse_ns += now_ns() - t0;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n) (sorts v). */
static uint64_t median_u64(uint64_t *v, uint32_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double median_dbl(double *v, uint32_t n)
{
    qsort(v, n, sizeof(*v), cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void load(bench_t *b, char **paths, uint32_t n)
{
    ag_fence_langs_t langs;
    ag_fence_langs_default(&langs);
    b->r = ag_xcalloc(n, sizeof(*b->r));
    b->n = n;
    for (uint32_t i = 0; i < n; i++) {
        reply_t *rp = &b->r[i];
        rp->path = paths[i];
        ag_buf_init(&rp->text, 64u << 20);
        if (ag_read_file(paths[i], &rp->text) != AG_OK)
            die(strerror(errno), paths[i]);
        find_blocks(rp, &langs);
    }
}

static void check_against_engine(bench_t *b)
{
    for (uint32_t i = 0; i < b->n; i++) {
        reply_t *rp = &b->r[i];
        ag_result_t res;
        engine_one(b, rp, &res);
        if (res.blocks != rp->nblocks) {
            fprintf(stderr, "bench_rewrite: %s: engine considers %u blocks, the baseline %u\n",
                    rp->path, res.blocks, rp->nblocks);
            exit(1);
        }
        rp->parsed = res.parsed;
        rp->rewrites = res.rewrites;
    }
}

static int mkdir_p(const char *dir)
{
    if (mkdir(dir, 0777) == 0 || errno == EEXIST)
        return AG_OK;
    return AG_EIO;
}

static void write_file(const char *path, const char *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0)
        die(strerror(errno), path);
}

/* Writes every considered block as DIR/blocks/NNN-B.ts (or .tsx) and the engine's rewrite of the
 * same block as DIR/expected/NNN-B.ts; NNN is the 1-based reply index, B the block index. Fences
 * are never edited, so block B of the output is block B of the input. */
static void extract(bench_t *b, const char *dir)
{
    char path[4096];
    ag_fence_langs_t langs;
    ag_fence_langs_default(&langs);
    snprintf(path, sizeof(path), "%s/blocks", dir);
    if (mkdir_p(dir) != AG_OK || mkdir_p(path) != AG_OK)
        die(strerror(errno), path);
    snprintf(path, sizeof(path), "%s/expected", dir);
    if (mkdir_p(path) != AG_OK)
        die(strerror(errno), path);
    snprintf(path, sizeof(path), "%s/replies.tsv", dir);
    FILE *index = fopen(path, "w");
    if (index == NULL)
        die(strerror(errno), path);
    for (uint32_t i = 0; i < b->n; i++) {
        reply_t *rp = &b->r[i];
        ag_result_t res;
        if (ag_engine_rewrite(b->engine, ag_buf_str(&rp->text), &b->out, &res) != AG_OK)
            die("engine output too big", rp->path);
        reply_t outr = {.path = rp->path, .text = b->out};
        find_blocks(&outr, &langs);
        if (outr.nblocks != rp->nblocks)
            die("block count changed by the rewrite", rp->path);
        for (uint32_t k = 0; k < rp->nblocks; k++) {
            const char *ext = rp->blocks[k].lang == AG_LANG_TSX ? "tsx" : "ts";
            snprintf(path, sizeof(path), "%s/blocks/%03u-%u.%s", dir, i + 1, k, ext);
            write_file(path, rp->text.ptr + rp->blocks[k].start,
                       rp->blocks[k].end - rp->blocks[k].start);
            snprintf(path, sizeof(path), "%s/expected/%03u-%u.%s", dir, i + 1, k, ext);
            write_file(path, outr.text.ptr + outr.blocks[k].start,
                       outr.blocks[k].end - outr.blocks[k].start);
        }
        /* reply index, path, blocks, blocks parsed, rewrites */
        fprintf(index, "%03u\t%s\t%u\t%u\t%u\n", i + 1, rp->path, rp->nblocks, res.parsed,
                res.rewrites);
        free(outr.blocks);
        ag_buf_reset(&b->out);
    }
    if (fclose(index) != 0)
        die(strerror(errno), dir);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_rewrite [--rules FILE] [--reps R] [--iters K] [--only engine|parse]\n"
            "                     [--extract DIR] REPLY...\n"
            "  Times the engine and tree-sitter's bare parse of the same blocks: R samples of K\n"
            "  corpus passes each (engine and parse passes alternate), prints medians.\n"
            "  --only: run only one side (for callgrind --toggle-collect=engine_pass/parse_pass);\n"
            "    prints the median time of one corpus pass.\n"
            "  --extract DIR: write the blocks and the engine's rewrites of them, then exit.\n");
    exit(2);
}

static void report(const bench_t *b, sample_t *s, const double *eng_reply_ns,
                   const double *parse_reply_ns)
{
    uint32_t reps = b->reps, n_sub = 0, n_full = 0, blocks = 0, parsed = 0, rewrites = 0;
    uint64_t bytes = 0, bytes_sub = 0, bytes_full = 0, code = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        const reply_t *rp = &b->r[i];
        bytes += rp->text.len;
        blocks += rp->nblocks;
        parsed += rp->parsed;
        rewrites += rp->rewrites;
        for (uint32_t k = 0; k < rp->nblocks; k++)
            code += rp->blocks[k].end - rp->blocks[k].start;
        if (rp->parsed > 0) {
            n_sub++;
            bytes_sub += rp->text.len;
        }
        if (rp->parsed > 0 && rp->parsed == rp->nblocks) {
            n_full++;
            bytes_full += rp->text.len;
        }
    }
    printf("corpus: %u replies, %llu bytes; %u TS/JS blocks (%llu bytes of code); the engine "
           "parses %u blocks in %u replies and applies %u rewrites\n",
           b->n, (unsigned long long)bytes, blocks, (unsigned long long)code, parsed, n_sub,
           rewrites);
    printf("samples: %u x %u corpus passes (engine and parse passes alternate); medians, "
           "ratio = engine throughput / parse throughput, median of the per-sample ratios "
           "[min..max]\n\n",
           reps, b->iters);

    struct {
        const char *name;
        uint32_t replies;
        uint64_t bytes;
        size_t eng_off, parse_off;
    } sets[] = {
        {"all replies", b->n, bytes, offsetof(sample_t, eng_all), offsetof(sample_t, parse_all)},
        {"replies the engine parses", n_sub, bytes_sub, offsetof(sample_t, eng_sub),
         offsetof(sample_t, parse_sub)},
        {"replies with every block parsed", n_full, bytes_full, offsetof(sample_t, eng_full),
         offsetof(sample_t, parse_full)},
    };
    uint64_t *tv = ag_xmalloc(reps * sizeof(*tv));
    double *rv = ag_xmalloc(reps * sizeof(*rv));
    printf("%-36s %-7s %12s %12s %9s\n", "set", "side", "us/reply", "replies/s", "MB/s");
    const char *keys[] = {"all", "parsed", "full"};
    double key_eng[3] = {0}, key_parse[3] = {0}, key_ratio[3] = {0};
    for (size_t si = 0; si < sizeof(sets) / sizeof(sets[0]); si++) {
        if (sets[si].replies == 0)
            continue;
        double per_pass[2];
        for (int side = 0; side < 2; side++) {
            size_t off = side ? sets[si].parse_off : sets[si].eng_off;
            for (uint32_t k = 0; k < reps; k++)
                tv[k] = *(const uint64_t *)((const char *)&s[k] + off);
            per_pass[side] = (double)median_u64(tv, reps) / b->iters; /* ns */
            char label[64];
            snprintf(label, sizeof(label), "%s (%u)", sets[si].name, sets[si].replies);
            printf("%-36s %-7s %12.2f %12.0f %9.2f\n", side ? "" : label, side ? "parse" : "engine",
                   per_pass[side] / 1e3 / sets[si].replies,
                   sets[si].replies / (per_pass[side] / 1e9),
                   (double)sets[si].bytes / 1e6 / (per_pass[side] / 1e9));
        }
        for (uint32_t k = 0; k < reps; k++) {
            uint64_t e = *(const uint64_t *)((const char *)&s[k] + sets[si].eng_off);
            uint64_t p = *(const uint64_t *)((const char *)&s[k] + sets[si].parse_off);
            rv[k] = (double)p / (double)e;
        }
        double med = median_dbl(rv, reps);
        printf("%-36s ratio   %.3f [%.3f..%.3f]\n\n", "", med, rv[0], rv[reps - 1]);
        key_eng[si] = per_pass[0] / 1e3 / sets[si].replies;
        key_parse[si] = per_pass[1] / 1e3 / sets[si].replies;
        key_ratio[si] = med;
    }

    /* the engine's own split of its time, all replies */
    uint64_t tot, pa, ma, sp;
    for (uint32_t k = 0; k < reps; k++)
        tv[k] = s[k].eng_all;
    tot = median_u64(tv, reps);
    for (uint32_t k = 0; k < reps; k++)
        tv[k] = s[k].res_parse;
    pa = median_u64(tv, reps);
    for (uint32_t k = 0; k < reps; k++)
        tv[k] = s[k].res_match;
    ma = median_u64(tv, reps);
    for (uint32_t k = 0; k < reps; k++)
        tv[k] = s[k].res_splice;
    sp = median_u64(tv, reps);
    uint64_t other = tot > pa + ma + sp ? tot - pa - ma - sp : 0;
    printf("engine time split (all replies, per corpus pass, from ag_result_t):\n");
    printf("  parse  %8.1f us %5.1f%%  (parse + error count + completion reparse + flatten)\n",
           pa / 1e3 / b->iters, 100.0 * pa / tot);
    printf("  match  %8.1f us %5.1f%%  (rule scan, ensure)\n", ma / 1e3 / b->iters,
           100.0 * ma / tot);
    printf("  splice %8.1f us %5.1f%%  (overlaps, incremental re-parse check, output)\n",
           sp / 1e3 / b->iters, 100.0 * sp / tot);
    printf("  other  %8.1f us %5.1f%%  (fences, literal scan, copies, events)\n",
           other / 1e3 / b->iters, 100.0 * other / tot);
    printf("  total  %8.1f us\n\n", tot / 1e3 / b->iters);

    /* per reply latency: each reply's median over samples */
    double *pr = ag_xmalloc(b->n * sizeof(*pr));
    memcpy(pr, eng_reply_ns, b->n * sizeof(*pr));
    qsort(pr, b->n, sizeof(*pr), cmp_dbl);
    uint32_t imax = 0;
    for (uint32_t i = 1; i < b->n; i++)
        if (eng_reply_ns[i] > eng_reply_ns[imax])
            imax = i;
    printf("engine latency per reply (each reply's median): median %.1f us, p90 %.1f us, max %.1f "
           "us (%s)\n",
           median_dbl(pr, b->n) / 1e3,
           pr[(b->n * 9) / 10 < b->n ? (b->n * 9) / 10 : b->n - 1] / 1e3, pr[b->n - 1] / 1e3,
           b->r[imax].path);
    /* where the engine spends most beyond the bare parse */
    uint32_t *order = ag_xmalloc(b->n * sizeof(*order));
    for (uint32_t i = 0; i < b->n; i++)
        order[i] = i;
    for (uint32_t i = 0; i < b->n && i < 5; i++)
        for (uint32_t j = i + 1; j < b->n; j++)
            if (eng_reply_ns[order[j]] - parse_reply_ns[order[j]] >
                eng_reply_ns[order[i]] - parse_reply_ns[order[i]]) {
                uint32_t t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    printf("largest engine - parse differences (us, each reply's median):\n");
    for (uint32_t i = 0; i < b->n && i < 5; i++) {
        const reply_t *rp = &b->r[order[i]];
        printf("  %8.1f engine %8.1f parse  %u/%u blocks parsed, %u rewrites  %s\n",
               eng_reply_ns[order[i]] / 1e3, parse_reply_ns[order[i]] / 1e3, rp->parsed,
               rp->nblocks, rp->rewrites, rp->path);
    }
    free(order);
    free(pr);
    /* for scripts: set, replies, engine us/reply, parse us/reply, ratio */
    printf("\n");
    for (size_t si = 0; si < sizeof(sets) / sizeof(sets[0]); si++)
        printf("result %s %u %.2f %.2f %.3f\n", keys[si], sets[si].replies, key_eng[si],
               key_parse[si], key_ratio[si]);
    free(tv);
    free(rv);
}

int main(int argc, char **argv)
{
    ag_tsalloc_install(); /* as astgate does: the figures are for the allocator it uses */
    const char *rules_path = "rules/mastra.yaml";
    const char *only = NULL, *extract_dir = NULL;
    bench_t b = {.iters = 20, .reps = 7};
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--rules") == 0 && i + 1 < argc)
            rules_path = argv[++i];
        else if (strcmp(a, "--reps") == 0 && i + 1 < argc)
            b.reps = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--iters") == 0 && i + 1 < argc)
            b.iters = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(a, "--extract") == 0 && i + 1 < argc)
            extract_dir = argv[++i];
        else if (a[0] == '-')
            usage();
        else
            break;
    }
    if (i == argc || b.reps == 0 || b.iters == 0)
        usage();
    if (only && strcmp(only, "engine") != 0 && strcmp(only, "parse") != 0)
        usage();

    ag_diag_t d;
    ag_rules_t *rules = NULL;
    if (ag_lang_check(&d) != AG_OK || ag_rules_load_files(&rules_path, 1, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        return 1;
    }
    /* as the CLI runs it: bare replies on, no parse timeout */
    ag_engine_opts_t opts = {.bare = true};
    b.engine = ag_engine_new(rules, &opts);
    for (int l = 0; l < AG_LANG_COUNT; l++)
        b.parser[l] = ag_lang_parser_new((ag_lang_t)l, 0);
    ag_buf_init(&b.out, 64u << 20);
    load(&b, argv + i, (uint32_t)(argc - i));
    check_against_engine(&b);

    if (extract_dir) {
        extract(&b, extract_dir);
        return 0;
    }

    sample_t *s = ag_xcalloc(b.reps, sizeof(*s));
    double *per_reply = ag_xcalloc((size_t)b.n * b.reps, sizeof(*per_reply));
    double *per_reply_parse = ag_xcalloc((size_t)b.n * b.reps, sizeof(*per_reply_parse));
    bool do_engine = only == NULL || strcmp(only, "engine") == 0;
    bool do_parse = only == NULL || strcmp(only, "parse") == 0;
    /* warm-up: caches, allocator, the engine's scratch buffers */
    for (uint32_t k = 0; k < 3; k++) {
        sample_t junk = {0};
        if (do_engine)
            engine_pass(&b, &junk);
        if (do_parse)
            parse_pass(&b);
    }
    for (uint32_t rep = 0; rep < b.reps; rep++) {
        for (uint32_t j = 0; j < b.n; j++)
            b.r[j].eng_ns = b.r[j].parse_ns = 0;
        for (uint32_t k = 0; k < b.iters; k++) {
            /* alternate which side goes first so neither always runs on a warmer cache */
            bool eng_first = (rep + k) % 2 == 0;
            if (eng_first && do_engine)
                engine_pass(&b, &s[rep]);
            if (do_parse)
                parse_pass(&b);
            if (!eng_first && do_engine)
                engine_pass(&b, &s[rep]);
        }
        for (uint32_t j = 0; j < b.n; j++) {
            const reply_t *rp = &b.r[j];
            s[rep].eng_all += rp->eng_ns;
            s[rep].parse_all += rp->parse_ns;
            if (rp->parsed > 0) {
                s[rep].eng_sub += rp->eng_ns;
                s[rep].parse_sub += rp->parse_ns;
            }
            if (rp->parsed > 0 && rp->parsed == rp->nblocks) {
                s[rep].eng_full += rp->eng_ns;
                s[rep].parse_full += rp->parse_ns;
            }
            per_reply[(size_t)j * b.reps + rep] = (double)rp->eng_ns / b.iters;
            per_reply_parse[(size_t)j * b.reps + rep] = (double)rp->parse_ns / b.iters;
        }
    }
    if (only) {
        /* median time of one corpus pass, for scripts that pair it with another tool's run */
        uint64_t *tv = ag_xmalloc(b.reps * sizeof(*tv));
        for (uint32_t k = 0; k < b.reps; k++)
            tv[k] = do_engine ? s[k].eng_all : s[k].parse_all;
        printf("pass_us %s %.1f\n", only, (double)median_u64(tv, b.reps) / b.iters / 1e3);
        free(tv);
        return 0;
    }
    double *eng_reply = ag_xmalloc(b.n * sizeof(*eng_reply));
    double *parse_reply = ag_xmalloc(b.n * sizeof(*parse_reply));
    for (uint32_t j = 0; j < b.n; j++) {
        eng_reply[j] = median_dbl(per_reply + (size_t)j * b.reps, b.reps);
        parse_reply[j] = median_dbl(per_reply_parse + (size_t)j * b.reps, b.reps);
    }
    report(&b, s, eng_reply, parse_reply);

    free(eng_reply);
    free(parse_reply);
    free(per_reply);
    free(per_reply_parse);
    free(s);
    for (uint32_t j = 0; j < b.n; j++) {
        ag_buf_dispose(&b.r[j].text);
        free(b.r[j].blocks);
    }
    free(b.r);
    ag_buf_dispose(&b.out);
    for (int l = 0; l < AG_LANG_COUNT; l++)
        ts_parser_delete(b.parser[l]);
    ag_engine_free(b.engine);
    ag_rules_free(rules);
    return 0;
}
