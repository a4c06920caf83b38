/* Benchmark: the CPU a streamed reply costs in the streaming core (src/proxy/stream.c), per hold
 * policy: `block` (hold a code block until it closes, then one rewrite) and `minimal` (release
 * what no rule can still edit: the hold analysis of src/engine/hold.c on the way), the latter
 * twice: with the duty off (every due analysis runs, as at a model's pace, where deltas come
 * milliseconds apart) and with the default duty (the deltas are pushed back to back here, as a
 * burst that a proxy reads at once, e.g. bench/run-proxy.sh's streamed rewrite). Each reply is
 * fed in deltas and finished; the figure is the thread's CPU time per reply, the median of
 * repeated samples, and minimal / block is what the minimal hold adds.
 * Before timing, every reply's streamed output is checked against ag_engine_rewrite of the whole
 * reply (both policies): a bench of a wrong output would mean nothing. */
#include "lang.h"
#include "rewrite.h"
#include "rules.h"
#include "stream.h"
#include "tsalloc.h"

#include <errno.h>
#include <time.h>

typedef struct reply {
    const char *path;
    ag_buf_t text;
} reply_t;

/* How a reply is cut into deltas. */
typedef enum split {
    SPLIT_TOKENS, /* deltas of 4-8 bytes (seeded), as a model's tokens come */
    SPLIT_EVENTS, /* 16 deltas of about equal size, as bench/proxy/upstream.js streams */
} split_t;

typedef struct bench {
    reply_t *r;
    uint32_t n;
    ag_engine_t *engine;
    ag_buf_t out;
    uint32_t iters, reps;
} bench_t;

static _Noreturn void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_hold: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Streams reply r through a new core, mode 0: hold block, 1: minimal without the duty, 2: minimal
 * with the default duty; cut by split; the assembled text goes to
 * b->out. Returns the analyses the core ran. */
__attribute__((noinline)) static uint64_t stream_one(bench_t *b, const reply_t *r, int mode,
                                                     split_t split)
{
    ag_stream_t *s = ag_stream_new(b->engine, 0, NULL, NULL);
    ag_stream_set_hold(s, mode == 0 ? AG_STREAM_HOLD_BLOCK : AG_STREAM_HOLD_MINIMAL);
    ag_stream_set_duty(s, mode == 1 ? 0 : AG_STREAM_DUTY);
    ag_stream_status_t st;
    size_t len = r->text.len, pos = 0;
    uint32_t seed = 14, piece = 0;
    ag_buf_reset(&b->out);
    while (pos < len) {
        size_t n;
        if (split == SPLIT_TOKENS) {
            seed = seed * 1103515245u + 12345u;
            n = 4 + (seed >> 16) % 5;
        } else {
            n = (size_t)((uint64_t)len * (piece + 1) / 16) - pos;
            piece++;
        }
        if (n > len - pos)
            n = len - pos;
        if (ag_stream_push(s, 1, ag_str(r->text.ptr + pos, n), &b->out, &st) != AG_OK)
            die("output too big", r->path);
        pos += n;
    }
    if (ag_stream_finish(s, 1, &b->out, &st) != AG_OK)
        die("output too big", r->path);
    ag_stream_hold_stats_t hs;
    ag_stream_hold_stats(s, &hs);
    if (hs.violations)
        die("the hold released bytes the rewrite changed", r->path);
    ag_stream_free(s);
    return hs.analyses;
}

static void check(bench_t *b)
{
    ag_buf_t want;
    ag_buf_init(&want, 64u << 20);
    for (uint32_t i = 0; i < b->n; i++) {
        ag_result_t res;
        ag_buf_reset(&want);
        if (ag_engine_rewrite(b->engine, ag_buf_str(&b->r[i].text), &want, &res) != AG_OK)
            die("output too big", b->r[i].path);
        if (res.blocked)
            continue; /* a blocked reply ends the stream early: not comparable */
        for (int mode = 0; mode < 3; mode++)
            for (int split = 0; split < 2; split++) {
                stream_one(b, &b->r[i], mode, (split_t)split);
                if (b->out.len != want.len || memcmp(b->out.ptr, want.ptr, want.len) != 0)
                    die("streamed output differs from the rewrite", b->r[i].path);
            }
    }
    ag_buf_dispose(&want);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, uint32_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_hold [--rules FILE] [--reps R] [--iters K] REPLY...\n"
                    "  Streams every reply through the streaming core, hold block and minimal,\n"
                    "  in 4-8 byte deltas and in 16 deltas; R samples of K corpus passes each;\n"
                    "  prints the median CPU per reply and minimal / block.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    ag_tsalloc_install();
    const char *rules_path = "rules/mastra.yaml";
    bench_t b = {.iters = 5, .reps = 7};
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--rules") == 0 && i + 1 < argc)
            rules_path = argv[++i];
        else if (strcmp(a, "--reps") == 0 && i + 1 < argc)
            b.reps = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--iters") == 0 && i + 1 < argc)
            b.iters = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (a[0] == '-')
            usage();
        else
            break;
    }
    if (i == argc || b.reps == 0 || b.iters == 0)
        usage();
    ag_diag_t d;
    ag_rules_t *rules = NULL;
    if (ag_lang_check(&d) != AG_OK || ag_rules_load_files(&rules_path, 1, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        return 1;
    }
    ag_engine_opts_t opts = {.bare = true}; /* as the proxy runs it, without a parse timeout */
    b.engine = ag_engine_new(rules, &opts);
    ag_buf_init(&b.out, 64u << 20);
    b.n = (uint32_t)(argc - i);
    b.r = ag_xcalloc(b.n, sizeof(*b.r));
    uint64_t bytes = 0;
    for (uint32_t k = 0; k < b.n; k++) {
        b.r[k].path = argv[i + k];
        ag_buf_init(&b.r[k].text, 64u << 20);
        if (ag_read_file(b.r[k].path, &b.r[k].text) != AG_OK)
            die(strerror(errno), b.r[k].path);
        bytes += b.r[k].text.len;
    }
    check(&b);
    printf("corpus: %u replies, %llu bytes; %u samples x %u passes; CPU per reply (thread "
           "time), medians; ratio: against block\n\n",
           b.n, (unsigned long long)bytes, b.reps, b.iters);
    printf("%-8s %9s | %-22s %8s | %-22s %8s\n", "deltas", "block", "minimal, every analysis",
           "ratio", "minimal, a burst (duty)", "ratio");
    const char *names[] = {"4-8 B", "16"};
    uint64_t *tv[3];
    for (int mode = 0; mode < 3; mode++)
        tv[mode] = ag_xcalloc(b.reps, sizeof(uint64_t));
    for (int split = 0; split < 2; split++) {
        uint64_t analyses[3] = {0};
        for (uint32_t rep = 0; rep < b.reps; rep++)
            for (int mode = 0; mode < 3; mode++) {
                uint64_t t0 = cpu_ns();
                for (uint32_t it = 0; it < b.iters; it++)
                    for (uint32_t k = 0; k < b.n; k++) {
                        uint64_t an = stream_one(&b, &b.r[k], mode, (split_t)split);
                        if (rep == 0 && it == 0)
                            analyses[mode] += an;
                    }
                tv[mode][rep] = cpu_ns() - t0;
            }
        double us[3];
        for (int mode = 0; mode < 3; mode++)
            us[mode] = (double)median(tv[mode], b.reps) / b.iters / b.n / 1e3;
        printf("%-8s %6.1f us | %6.1f us %4.1f analyses %7.2fx | %6.1f us %4.1f analyses %7.2fx\n",
               names[split], us[0], us[1], (double)analyses[1] / b.n, us[1] / us[0], us[2],
               (double)analyses[2] / b.n, us[2] / us[0]);
        printf("result %s %.1f %.1f %.1f %.3f %.3f\n", split ? "events" : "tokens", us[0], us[1],
               us[2], us[1] / us[0], us[2] / us[0]);
    }
    for (int mode = 0; mode < 3; mode++)
        free(tv[mode]);
    for (uint32_t k = 0; k < b.n; k++)
        ag_buf_dispose(&b.r[k].text);
    free(b.r);
    ag_buf_dispose(&b.out);
    ag_engine_free(b.engine);
    ag_rules_free(rules);
    return 0;
}
