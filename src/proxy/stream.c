/* The streaming core. Per key, the text received so far is scanned line by line with the same
 * fence finder as the engine (fence.c), from the last line start known to be outside any block:
 * complete prose lines go out at once, a last incomplete line goes out unless it could still open
 * a fence, a code block is held until its closing fence and then rewritten alone. The engine
 * treats blocks independently, so block-by-block rewriting equals rewriting the whole text. */
#include "stream.h"

#include "fence.h"
#include "hold.h"

#include <time.h>

#define MAX_KEYS 256
#define MAX_ARRIVALS 256 /* pushes remembered per key while their bytes are held */

typedef struct key_state {
    uint64_t key;
    ag_buf_t text;     /* everything received for this key */
    uint32_t emitted;  /* bytes of text already handed to the caller */
    uint32_t scan;     /* a line start outside any block: fence scanning resumes here */
    uint32_t blocks;   /* blocks passed so far, for numbering */
    uint32_t giveup;   /* opener offset of a block too large to hold; UINT32_MAX = none */
    bool bare_checked; /* decided whether the text could be a bare code reply */
    bool bare_pending; /* holding everything: the text may be bare code */
    bool finished;
    bool blocked;
    ag_stream_hold_t hold; /* the policy when the key started */
    /* minimal hold, in the open block: the last analysis */
    uint32_t an_block; /* the block's code start it was made for; UINT32_MAX = none */
    uint32_t an_len;   /* the text length it saw */
    uint32_t an_fr;    /* its frontier (absolute) */
    ag_hold_end_t an_end;
    ag_hold_memo_t *memo; /* the last analysis's parse, for the next; NULL until the first */
    uint64_t an_next;     /* clock time before which no analysis of the block runs (duty) */
    /* when the held bytes arrived: arr_off[i] is where the bytes of a push start, arr_ns[i]
     * when it came (oldest first; only pushes with bytes still held) */
    uint32_t arr_off[MAX_ARRIVALS];
    uint64_t arr_ns[MAX_ARRIVALS];
    uint32_t narr;
    uint32_t held_max; /* bytes held at once at most since the last block was rewritten */
} key_state_t;

struct ag_stream {
    ag_engine_t *engine;
    ag_stream_hold_t hold;
    ag_stream_hold_stats_t stats;
    size_t max_text;
    ag_stream_result_cb cb;
    ag_stream_wait_cb wait_cb;
    void *ud;
    uint32_t duty;            /* see ag_stream_set_duty */
    ag_stream_clock_fn clock; /* NULL = mono_ns */
    void *clock_ud;
    key_state_t *keys;
    uint32_t nkeys, cap;
    ag_buf_t scratch;
};

ag_stream_t *ag_stream_new(ag_engine_t *engine, size_t max_text, ag_stream_result_cb cb, void *ud)
{
    ag_stream_t *s = ag_xcalloc(1, sizeof(*s));
    s->engine = engine;
    s->max_text = max_text ? max_text : (8u << 20);
    s->cb = cb;
    s->ud = ud;
    s->duty = AG_STREAM_DUTY;
    ag_buf_init(&s->scratch, s->max_text * 2 + 65536);
    return s;
}

void ag_stream_set_hold(ag_stream_t *s, ag_stream_hold_t hold)
{
    s->hold = hold;
}

void ag_stream_set_wait(ag_stream_t *s, ag_stream_wait_cb cb)
{
    s->wait_cb = cb;
}

void ag_stream_set_duty(ag_stream_t *s, uint32_t duty)
{
    s->duty = duty;
}

void ag_stream_set_clock(ag_stream_t *s, ag_stream_clock_fn clock, void *ud)
{
    s->clock = clock;
    s->clock_ud = ud;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t clock_ns(const ag_stream_t *s)
{
    return s->clock ? s->clock(s->clock_ud) : mono_ns();
}

/* The thread's CPU time: an analysis's cost, without the time the thread was not running (on a
 * loaded machine a wall-clock cost would hold back analyses at a model's pace). */
static uint64_t cpu_ns(const ag_stream_t *s)
{
    if (s->clock)
        return s->clock(s->clock_ud);
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* After a push or finish: the bytes that went out and had come in an earlier push waited; report
 * how long the oldest of them did, and forget the arrivals no longer held. */
static void waited(ag_stream_t *s, key_state_t *k, uint32_t before, uint64_t now)
{
    if (k->emitted > before && k->narr && k->arr_off[0] <= before && s->wait_cb) {
        uint32_t i = 0;
        while (i + 1 < k->narr && k->arr_off[i + 1] <= before)
            i++;
        if (now > k->arr_ns[i])
            s->wait_cb(s->ud, k->key, now - k->arr_ns[i], k->emitted - before);
    }
    uint32_t drop = 0;
    while (drop + 1 < k->narr && k->arr_off[drop + 1] <= k->emitted)
        drop++;
    if (k->narr && k->arr_off[k->narr - 1] < k->text.len && k->emitted >= k->text.len)
        drop = k->narr; /* nothing held */
    if (drop) {
        memmove(k->arr_off, k->arr_off + drop, (k->narr - drop) * sizeof(k->arr_off[0]));
        memmove(k->arr_ns, k->arr_ns + drop, (k->narr - drop) * sizeof(k->arr_ns[0]));
        k->narr -= drop;
    }
}

void ag_stream_hold_stats(const ag_stream_t *s, ag_stream_hold_stats_t *st)
{
    *st = s->stats;
}

void ag_stream_free(ag_stream_t *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->nkeys; i++) {
        ag_buf_dispose(&s->keys[i].text);
        ag_hold_memo_free(s->keys[i].memo);
    }
    free(s->keys);
    ag_buf_dispose(&s->scratch);
    free(s);
}

static key_state_t *find(const ag_stream_t *s, uint64_t key)
{
    for (uint32_t i = 0; i < s->nkeys; i++)
        if (s->keys[i].key == key)
            return &s->keys[i];
    return NULL;
}

static key_state_t *get(ag_stream_t *s, uint64_t key)
{
    key_state_t *k = find(s, key);
    if (k)
        return k;
    if (s->nkeys == MAX_KEYS)
        return NULL;
    if (s->nkeys == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4;
        s->keys = ag_xrealloc(s->keys, s->cap * sizeof(*s->keys));
    }
    k = &s->keys[s->nkeys++];
    memset(k, 0, sizeof(*k));
    k->key = key;
    k->giveup = UINT32_MAX;
    k->hold = s->hold;
    k->an_block = UINT32_MAX;
    ag_buf_init(&k->text, s->max_text);
    return k;
}

size_t ag_stream_held(const ag_stream_t *s, uint64_t key)
{
    const key_state_t *k = find(s, key);
    return k ? k->text.len - k->emitted : 0;
}

static int emit_to(key_state_t *k, uint32_t to, ag_buf_t *out)
{
    if (to <= k->emitted)
        return AG_OK;
    int rc = ag_buf_append(out, k->text.ptr + k->emitted, to - k->emitted);
    if (rc == AG_OK)
        k->emitted = to;
    return rc;
}

/* Whether an incomplete last line could still become a fence opener. */
static bool could_open(ag_str_t line)
{
    size_t i = 0;
    while (i < line.len && i < 3 && line.ptr[i] == ' ')
        i++;
    if (i == line.len)
        return true;
    return line.ptr[i] == '`' || line.ptr[i] == '~';
}

/* Rewrites text[from, to) alone and appends the result, but for what of it already went out
 * (text[from, k->emitted), released by the hold: the rewrite leaves those bytes as they are);
 * *blocked when a block rule matched. */
static int rewrite_span(ag_stream_t *s, key_state_t *k, uint32_t from, uint32_t to, ag_buf_t *out,
                        bool *blocked)
{
    uint32_t sent = k->emitted > from ? k->emitted - from : 0;
    ag_result_t res;
    ag_buf_reset(&s->scratch);
    /* events are numbered in the whole text: from is a line start */
    uint32_t lines = 0;
    for (const char *p = k->text.ptr, *end = k->text.ptr + from;
         (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        lines++;
    ag_engine_set_origin(s->engine, k->blocks, lines, from);
    int rc = ag_engine_rewrite(s->engine, ag_str(k->text.ptr + from, to - from), &s->scratch, &res);
    ag_engine_set_origin(s->engine, 0, 0, 0);
    if (rc != AG_OK) {
        /* too large to rewrite: pass it through unchanged */
        ag_buf_reset(&s->scratch);
        rc = ag_buf_append(&s->scratch, k->text.ptr + from, to - from);
        if (rc != AG_OK)
            return rc;
        memset(&res, 0, sizeof(res));
    }
    if (to - k->emitted > k->held_max)
        k->held_max = to - k->emitted;
    res.held_max = k->held_max;
    res.held_block = k->blocks;
    k->held_max = 0;
    if (s->cb)
        s->cb(s->ud, k->key, &res);
    if (res.blocked) {
        *blocked = true;
        k->emitted = to;
        return AG_OK;
    }
    if (sent > s->scratch.len || memcmp(s->scratch.ptr, k->text.ptr + from, sent) != 0) {
        /* the rewrite changed bytes the hold let go: never expected (the property test), but
         * counted, and the client gets the rest of the rewrite */
        s->stats.violations++;
        if (sent > s->scratch.len)
            sent = (uint32_t)s->scratch.len;
    }
    rc = ag_buf_append(out, s->scratch.ptr + sent, s->scratch.len - sent);
    if (rc == AG_OK)
        k->emitted = to;
    return rc;
}

/* Whether the text added since the last analysis of the block at code stays inside the string
 * or line comment that analysis ended in (no quote, backslash or line end came). */
static bool quiet(const key_state_t *k, uint32_t code, ag_str_t all)
{
    if (k->an_block != code || all.len < k->an_len || (!k->an_end.quote && !k->an_end.line_comment))
        return false;
    for (size_t i = k->an_len; i < all.len; i++) {
        char c = all.ptr[i];
        if (c == '\n' || c == '\r' || (k->an_end.quote && (c == k->an_end.quote || c == '\\')))
            return false;
    }
    return true;
}

#define HOLD_EVERY 32 /* bytes of code after which an analysis is due anyway */

/* Whether to analyse the block again now: the text since the last analysis ends a line or a
 * construct (where the frontier can move), or is long. Skipping one never releases too much. */
static bool due(const key_state_t *k, uint32_t code, ag_str_t all)
{
    if (k->an_block == code && k->an_end.settled)
        return false; /* nothing can move the frontier before the block closes */
    if (k->an_block != code || all.len < k->an_len || all.len - k->an_len >= HOLD_EVERY)
        return true;
    for (size_t i = k->an_len; i < all.len; i++) {
        char c = all.ptr[i];
        if (c == '\n' || c == ',' || c == ';' || c == '}' || c == ')' || c == ']' || c == '\'' ||
            c == '"' || c == '`')
            return true;
    }
    return false;
}

static int advance(ag_stream_t *s, key_state_t *k, bool final, ag_buf_t *out, bool *blocked)
{
    ag_str_t all = ag_buf_str(&k->text);
    int rc;
    if (!k->bare_checked && ag_engine_bare(s->engine)) {
        bool undecided = false;
        bool code = ag_engine_bare_start(all, &undecided);
        if (undecided && !final)
            return AG_OK; /* a few bytes: wait for the line to say more */
        k->bare_checked = true;
        k->bare_pending = code;
    }
    k->bare_checked = true;
    if (k->bare_pending) {
        if (!ag_fence_any(all)) {
            if (!final)
                return AG_OK; /* may be a bare code reply: hold it all */
            return rewrite_span(s, k, 0, (uint32_t)all.len, out, blocked);
        }
        k->bare_pending = false; /* it has fences: a markdown reply */
    }
    for (;;) {
        uint32_t complete = (uint32_t)all.len;
        if (!final) {
            const char *nl =
                all.len > k->scan ? memrchr(all.ptr + k->scan, '\n', all.len - k->scan) : NULL;
            complete = nl ? (uint32_t)(nl - all.ptr) + 1 : k->scan;
        }
        ag_str_t win = ag_str(all.ptr + k->scan, complete - k->scan);
        uint32_t pos = 0;
        ag_block_t b;
        if (ag_fence_next(win, &pos, &b) != AG_OK) {
            /* no opener in the complete lines: all of it is prose */
            rc = emit_to(k, complete, out);
            k->scan = complete;
            if (rc == AG_OK && !could_open(ag_str(all.ptr + complete, all.len - complete)))
                rc = emit_to(k, (uint32_t)all.len, out);
            return rc;
        }
        uint32_t open = k->scan + b.open_start;
        rc = emit_to(k, open, out);
        if (rc != AG_OK)
            return rc;
        int lang = open == k->giveup ? -1 : ag_engine_block_lang(s->engine, &b);
        if (!b.closed && !final && lang >= 0 && all.len - open > s->max_text / 2) {
            k->giveup = open; /* too large to hold: let this block through unchanged */
            lang = -1;
        }
        if (lang < 0) {
            if (!b.closed)
                return emit_to(k, (uint32_t)all.len, out); /* its content goes out as it comes */
            rc = emit_to(k, k->scan + b.close_end, out);
            k->scan += pos;
            k->blocks++;
            if (rc != AG_OK)
                return rc;
            continue;
        }
        if (!b.closed && !final) {
            if (k->hold != AG_STREAM_HOLD_MINIMAL)
                return AG_OK; /* hold the code block until its closing fence */
            /* release what no rule can still edit: the opener line, then the code up to the
             * hold's frontier */
            uint32_t code = k->scan + b.start;
            if (quiet(k, code, all)) {
                /* still inside the same string or comment: nothing it holds can change the
                 * frontier, and text after a frontier at the end goes out as it comes */
                if (k->an_fr == k->an_len)
                    k->an_fr = (uint32_t)all.len;
                k->an_len = (uint32_t)all.len;
                return emit_to(k, k->an_fr, out);
            }
            if (k->an_block == code && k->an_end.free)
                return emit_to(k, (uint32_t)all.len, out);
            if (!due(k, code, all))
                return AG_OK; /* holding less later is as safe as now, and cheaper */
            uint64_t now = s->duty ? clock_ns(s) : 0;
            if (s->duty && k->an_block == code && now < k->an_next)
                return AG_OK; /* over the CPU budget: a burst of deltas, analysed later */
            uint64_t c0 = s->duty ? cpu_ns(s) : 0;
            if (k->memo == NULL)
                k->memo = ag_hold_memo_new();
            if (k->an_block != code)
                ag_hold_memo_reset(k->memo); /* a new block */
            s->stats.analyses++;
            uint32_t fr = ag_hold_frontier(s->engine, &b, ag_str(all.ptr + code, all.len - code),
                                           k->memo, &k->an_end);
            if (s->duty) {
                uint64_t c1 = cpu_ns(s);
                k->an_next = now + (c1 > c0 ? c1 - c0 : 0) * (1 + (uint64_t)s->duty);
            }
            k->an_block = code;
            k->an_len = (uint32_t)all.len;
            k->an_fr = fr ? code + fr : open; /* nothing: not even the opener line (a block
                                                 rule may replace the whole block) */
            return emit_to(k, k->an_fr, out);
        }
        uint32_t end = b.closed ? k->scan + b.close_end : (uint32_t)all.len;
        if (k->memo)
            ag_hold_memo_reset(k->memo); /* the block is done: its parse is no longer needed */
        rc = rewrite_span(s, k, open, end, out, blocked);
        k->scan = b.closed ? k->scan + pos : (uint32_t)all.len;
        k->blocks++;
        if (rc != AG_OK || *blocked || !b.closed)
            return rc;
    }
}

int ag_stream_push(ag_stream_t *s, uint64_t key, ag_str_t delta, ag_buf_t *out,
                   ag_stream_status_t *status)
{
    *status = AG_STREAM_OK;
    key_state_t *k = get(s, key);
    if (k == NULL)
        return ag_buf_append(out, delta.ptr, delta.len); /* too many keys: pass through */
    if (k->blocked) {
        *status = AG_STREAM_BLOCKED;
        return AG_OK;
    }
    if (k->finished || ag_buf_append(&k->text, delta.ptr, delta.len) != AG_OK) {
        /* over the cap: what is held goes out unchanged, and so does the rest */
        int rc = emit_to(k, (uint32_t)k->text.len, out);
        if (rc == AG_OK)
            rc = ag_buf_append(out, delta.ptr, delta.len);
        k->finished = true;
        return rc;
    }
    uint64_t now = s->wait_cb ? mono_ns() : 0;
    if (s->wait_cb && k->narr < MAX_ARRIVALS) {
        k->arr_off[k->narr] = (uint32_t)(k->text.len - delta.len);
        k->arr_ns[k->narr++] = now;
    }
    uint32_t before = k->emitted;
    bool blocked = false;
    int rc = advance(s, k, false, out, &blocked);
    if (blocked) {
        k->blocked = true;
        *status = AG_STREAM_BLOCKED;
    }
    if (s->wait_cb)
        waited(s, k, before, now);
    if (k->text.len - k->emitted > k->held_max)
        k->held_max = (uint32_t)(k->text.len - k->emitted);
    if (k->text.len - k->emitted > s->stats.held_max)
        s->stats.held_max = k->text.len - k->emitted;
    return rc;
}

int ag_stream_finish(ag_stream_t *s, uint64_t key, ag_buf_t *out, ag_stream_status_t *status)
{
    *status = AG_STREAM_OK;
    key_state_t *k = find(s, key);
    if (k == NULL)
        return AG_OK;
    if (k->blocked) {
        *status = AG_STREAM_BLOCKED;
        return AG_OK;
    }
    int rc = AG_OK;
    uint32_t before = k->emitted;
    if (!k->finished) {
        bool blocked = false;
        rc = advance(s, k, true, out, &blocked);
        if (blocked) {
            k->blocked = true;
            *status = AG_STREAM_BLOCKED;
        }
    } else {
        rc = emit_to(k, (uint32_t)k->text.len, out);
    }
    if (s->wait_cb)
        waited(s, k, before, mono_ns());
    k->finished = true;
    return rc;
}
