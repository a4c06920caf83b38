/* The API adapters' own cost: for every golden reply, a non-streamed body and a streamed event
 * sequence (16-byte deltas) per API (Chat Completions, Responses, Anthropic Messages), rewritten
 * in process; medians of per-pass times next to the engine alone on the same texts. */
#include "api/api.h"
#include "json.h"
#include "rewrite.h"
#include "tsalloc.h"
#include "rules.h"

#include <time.h>

#define MAX_REPLIES 512
#define PASSES 15

typedef struct sample {
    ag_buf_t body[3];   /* chat, responses, anthropic: non-streamed */
    ag_buf_t stream[3]; /* the same as SSE */
    ag_buf_t text;
} sample_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void must(int rc)
{
    if (rc != AG_OK) {
        fprintf(stderr, "bench_api: out of buffer\n");
        exit(1);
    }
}

static void json_str(ag_buf_t *b, ag_str_t s)
{
    must(ag_json_append_str(b, s));
}

static void build(sample_t *s)
{
    ag_str_t t = ag_buf_str(&s->text);
    for (int a = 0; a < 3; a++) {
        ag_buf_init(&s->body[a], 1u << 24);
        ag_buf_init(&s->stream[a], 1u << 24);
    }
    /* non-streamed bodies */
    must(ag_buf_appendf(&s->body[0], "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
                                     "\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,"
                                     "\"message\":{\"role\":\"assistant\",\"content\":"));
    json_str(&s->body[0], t);
    must(ag_buf_appendf(&s->body[0], "},\"finish_reason\":\"stop\"}],\"usage\":{\"total_tokens\":9}}"));
    must(ag_buf_appendf(&s->body[1], "{\"id\":\"resp_1\",\"object\":\"response\",\"status\":"
                                     "\"completed\",\"model\":\"gpt-4o\",\"output\":[{\"type\":"
                                     "\"message\",\"id\":\"msg_1\",\"role\":\"assistant\","
                                     "\"content\":[{\"type\":\"output_text\",\"text\":"));
    json_str(&s->body[1], t);
    must(ag_buf_appendf(&s->body[1], ",\"annotations\":[]}]}]}"));
    must(ag_buf_appendf(&s->body[2], "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":"
                                     "\"assistant\",\"model\":\"claude\",\"content\":[{\"type\":"
                                     "\"text\",\"text\":"));
    json_str(&s->body[2], t);
    must(ag_buf_appendf(&s->body[2], "}],\"stop_reason\":\"end_turn\"}"));
    /* streams */
    ag_buf_t *c = &s->stream[0], *r = &s->stream[1], *m = &s->stream[2];
    must(ag_buf_appendf(c, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                           "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                           "\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"));
    uint32_t seq = 0;
    must(ag_buf_appendf(r, "event: response.created\ndata: {\"type\":\"response.created\","
                           "\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4o\",\"output\":[]},"
                           "\"sequence_number\":%u}\n\n",
                        seq++));
    must(ag_buf_appendf(r, "event: response.output_item.added\ndata: {\"type\":"
                           "\"response.output_item.added\",\"output_index\":0,\"item\":{\"id\":"
                           "\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[]},"
                           "\"sequence_number\":%u}\n\n",
                        seq++));
    must(ag_buf_appendf(r, "event: response.content_part.added\ndata: {\"type\":"
                           "\"response.content_part.added\",\"item_id\":\"msg_1\",\"output_index\":0,"
                           "\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\"},"
                           "\"sequence_number\":%u}\n\n",
                        seq++));
    must(ag_buf_appendf(m, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{"
                           "\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":"
                           "[],\"model\":\"claude\"}}\n\nevent: content_block_start\ndata: {\"type\":"
                           "\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
                           "\"text\":\"\"}}\n\n"));
    for (size_t off = 0; off < t.len;) {
        size_t n = t.len - off < 16 ? t.len - off : 16;
        while (off + n < t.len && ((unsigned char)t.ptr[off + n] & 0xC0) == 0x80)
            n++;
        ag_str_t d = ag_str(t.ptr + off, n);
        must(ag_buf_appendf(c, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\","
                               "\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,"
                               "\"delta\":{\"content\":"));
        json_str(c, d);
        must(ag_buf_appendf(c, "},\"finish_reason\":null}]}\n\n"));
        must(ag_buf_appendf(r, "event: response.output_text.delta\ndata: {\"type\":"
                               "\"response.output_text.delta\",\"item_id\":\"msg_1\","
                               "\"output_index\":0,\"content_index\":0,\"delta\":"));
        json_str(r, d);
        must(ag_buf_appendf(r, ",\"sequence_number\":%u}\n\n", seq++));
        must(ag_buf_appendf(m, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                               "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"));
        json_str(m, d);
        must(ag_buf_appendf(m, "}}\n\n"));
        off += n;
    }
    must(ag_buf_appendf(c, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                           "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},"
                           "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"));
    must(ag_buf_appendf(r, "event: response.output_text.done\ndata: {\"type\":"
                           "\"response.output_text.done\",\"item_id\":\"msg_1\",\"output_index\":0,"
                           "\"content_index\":0,\"text\":"));
    json_str(r, t);
    must(ag_buf_appendf(r, ",\"sequence_number\":%u}\n\n", seq++));
    must(ag_buf_appendf(r, "event: response.completed\ndata: {\"type\":\"response.completed\","
                           "\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4o\",\"output\":[{"
                           "\"type\":\"message\",\"id\":\"msg_1\",\"content\":[{\"type\":"
                           "\"output_text\",\"text\":"));
    json_str(r, t);
    must(ag_buf_appendf(r, "}]}]},\"sequence_number\":%u}\n\n", seq++));
    must(ag_buf_appendf(m, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\","
                           "\"index\":0}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}"
                           "\n\n"));
}

/* ASTGATE_HOLD=minimal|block: the streaming core's hold policy (ag_stream_set_hold); default
 * block, as astgate.yaml's `stream.hold` */
static ag_stream_hold_t hold_policy(const char **name)
{
    const char *h = getenv("ASTGATE_HOLD");
    *name = h && *h ? h : "block";
    if (strcmp(*name, "minimal") == 0)
        return AG_STREAM_HOLD_MINIMAL;
    if (strcmp(*name, "block") != 0) {
        fprintf(stderr, "ASTGATE_HOLD must be minimal or block, not '%s'\n", *name);
        exit(2);
    }
    return AG_STREAM_HOLD_BLOCK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    ag_tsalloc_install(); /* as astgate does: the figures are for the allocator it uses */
    if (argc < 3) {
        fprintf(stderr, "usage: bench_api RULES REPLY...\n");
        return 2;
    }
    const char *hold_name;
    ag_stream_hold_t hold = hold_policy(&hold_name);
    const char *rf[] = {argv[1]};
    ag_rules_t *rules;
    ag_diag_t d;
    if (ag_rules_load_files(rf, 1, &rules, &d) != AG_OK) {
        ag_diag_print(&d, stderr);
        return 1;
    }
    ag_engine_opts_t eo = {0};
    eo.bare = true;
    ag_engine_t *e = ag_engine_new(rules, &eo);
    static sample_t sm[MAX_REPLIES];
    int n = 0;
    size_t bytes = 0;
    for (int i = 2; i < argc && n < MAX_REPLIES; i++) {
        ag_buf_init(&sm[n].text, 1u << 24);
        if (ag_read_file(argv[i], &sm[n].text) != AG_OK)
            continue;
        bytes += sm[n].text.len;
        build(&sm[n++]);
    }
    static const char *const names[3] = {"chat.completions", "responses", "messages"};
    const ag_api_t *apis[3] = {&ag_api_openai_chat, &ag_api_openai_responses, &ag_api_anthropic};
    uint64_t t_engine[PASSES], t_body[3][PASSES], t_stream[3][PASSES];
    ag_buf_t out;
    ag_buf_init(&out, 1u << 26);
    uint64_t rewrites[3] = {0};
    for (int p = 0; p < PASSES; p++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < n; i++) {
            ag_result_t res;
            ag_buf_reset(&out);
            must(ag_engine_rewrite(e, ag_buf_str(&sm[i].text), &out, &res));
        }
        t_engine[p] = now_ns() - t0;
        for (int a = 0; a < 3; a++) {
            t0 = now_ns();
            for (int i = 0; i < n; i++) {
                ag_api_env_t env;
                memset(&env, 0, sizeof(env));
                env.engine = e;
                ag_api_stats_t st;
                memset(&st, 0, sizeof(st));
                ag_buf_reset(&out);
                if (apis[a]->rewrite_body(&env, ag_buf_str(&sm[i].body[a]), &out, &st) != AG_OK)
                    fprintf(stderr, "bench_api: %s rejected a body\n", names[a]);
                if (p == 0)
                    rewrites[a] += st.rewrites;
            }
            t_body[a][p] = now_ns() - t0;
            t0 = now_ns();
            for (int i = 0; i < n; i++) {
                ag_api_env_t env;
                memset(&env, 0, sizeof(env));
                env.engine = e;
                env.max_held = 4u << 20;
                env.hold = hold;
                ag_api_stats_t st;
                memset(&st, 0, sizeof(st));
                void *s = apis[a]->stream_new(&env, &st);
                ag_buf_reset(&out);
                bool ended = false;
                ag_str_t all = ag_buf_str(&sm[i].stream[a]);
                for (size_t off = 0; off < all.len && !ended; off += 1024) {
                    size_t k = all.len - off < 1024 ? all.len - off : 1024;
                    must(apis[a]->stream_feed(s, ag_str(all.ptr + off, k), &out, &ended));
                }
                must(apis[a]->stream_end(s, &out));
                apis[a]->stream_free(s);
            }
            t_stream[a][p] = now_ns() - t0;
        }
    }
    qsort(t_engine, PASSES, sizeof(uint64_t), cmp_u64);
    double eng = (double)t_engine[PASSES / 2] / n / 1000.0;
    printf("%d replies, %zu bytes; %d passes, medians; engine alone %.1f us/reply; hold: %s\n", n,
           bytes, PASSES, eng, hold_name);
    printf("%-18s %14s %10s %16s %10s %9s\n", "api", "body us/reply", "/ engine",
           "stream us/reply", "/ engine", "rewrites");
    for (int a = 0; a < 3; a++) {
        qsort(t_body[a], PASSES, sizeof(uint64_t), cmp_u64);
        qsort(t_stream[a], PASSES, sizeof(uint64_t), cmp_u64);
        double b = (double)t_body[a][PASSES / 2] / n / 1000.0;
        double st = (double)t_stream[a][PASSES / 2] / n / 1000.0;
        printf("%-18s %14.1f %10.2f %16.1f %10.2f %9llu\n", names[a], b, b / eng, st, st / eng,
               (unsigned long long)rewrites[a]);
    }
    ag_engine_free(e);
    ag_rules_free(rules);
    return 0;
}
