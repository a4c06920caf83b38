/* What holding a tool call costs, next to the same code as reply text: a streamed reply carrying
 * one ~2 KB file (a Mastra agent whose model needs one rewrite), once as a fenced block in the
 * text and once as a `Write` call's `content`, per API (Chat Completions, Responses, Anthropic
 * Messages), fed to the adapter one event at a time as the upstream would send them. Reported
 * (medians over passes): the adapter's whole CPU per reply, and the release time: the CPU of the
 * event that completes the code (the closing fence, or the end of the call), which is what the
 * hold adds after the last byte of the code arrived. Both are compared with one engine rewrite of
 * the file (one parse).
 *   build/bench_tools RULES */
#include "api/api.h"
#include "json.h"
#include "rewrite.h"
#include "tsalloc.h"
#include "rules.h"

#include <time.h>

#define PASSES 201
#define DELTA 16

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

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void must(int rc)
{
    if (rc != AG_OK) {
        fprintf(stderr, "bench_tools: out of buffer\n");
        exit(1);
    }
}

/* An event list: offsets of each event's end in one buffer. */
typedef struct events {
    ag_buf_t b;
    size_t end[4096];
    uint32_t n;
    uint32_t release; /* the event that completes the code */
} events_t;

static void ev_end(events_t *e)
{
    AG_ASSERT(e->n < 4096);
    e->end[e->n++] = e->b.len;
}

static void json_str(ag_buf_t *b, ag_str_t s)
{
    must(ag_json_append_str(b, s));
}

/* the pieces of t, DELTA bytes each, never inside a UTF-8 character */
static size_t piece(ag_str_t t, size_t off)
{
    size_t n = t.len - off < DELTA ? t.len - off : DELTA;
    while (off + n < t.len && ((unsigned char)t.ptr[off + n] & 0xC0) == 0x80)
        n++;
    return n;
}

enum { API_CHAT, API_RESPONSES, API_MESSAGES, APIS };

/* text: the reply text streamed as text deltas; or args: a Write call's arguments */
static void build(events_t *e, int api, ag_str_t text, bool tool)
{
    ag_buf_init(&e->b, 1u << 24);
    ag_buf_t *b = &e->b;
    uint32_t seq = 0;
    if (api == API_CHAT) {
        must(ag_buf_appendf(b,
                            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\","
                            "\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,"
                            "\"delta\":{\"role\":\"assistant\",\"content\":%s},"
                            "\"finish_reason\":null}]}\n\n",
                            tool ? "null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":"
                                   "\"function\",\"function\":{\"name\":\"Write\",\"arguments\":"
                                   "\"\"}}]"
                                 : "\"\""));
        ev_end(e);
    } else if (api == API_RESPONSES) {
        must(ag_buf_appendf(b,
                            "event: response.created\ndata: {\"type\":\"response.created\","
                            "\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-4o\",\"output\":[]},"
                            "\"sequence_number\":%u}\n\n",
                            seq++));
        ev_end(e);
        if (tool)
            must(ag_buf_appendf(b,
                                "event: response.output_item.added\ndata: {\"type\":"
                                "\"response.output_item.added\",\"output_index\":0,\"item\":{"
                                "\"id\":\"fc_1\",\"type\":\"function_call\",\"call_id\":"
                                "\"call_1\",\"name\":\"Write\",\"arguments\":\"\",\"status\":"
                                "\"in_progress\"},\"sequence_number\":%u}\n\n",
                                seq++));
        else
            must(ag_buf_appendf(b,
                                "event: response.output_item.added\ndata: {\"type\":"
                                "\"response.output_item.added\",\"output_index\":0,\"item\":{"
                                "\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\","
                                "\"content\":[]},\"sequence_number\":%u}\n\nevent: "
                                "response.content_part.added\ndata: {\"type\":"
                                "\"response.content_part.added\",\"item_id\":\"msg_1\","
                                "\"output_index\":0,\"content_index\":0,\"part\":{\"type\":"
                                "\"output_text\",\"text\":\"\"},\"sequence_number\":%u}\n\n",
                                seq, seq + 1));
        seq += tool ? 0 : 2;
        ev_end(e);
    } else {
        must(ag_buf_appendf(b,
                            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{"
                            "\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\","
                            "\"content\":[],\"model\":\"claude\"}}\n\nevent: content_block_start\n"
                            "data: {\"type\":\"content_block_start\",\"index\":0,"
                            "\"content_block\":%s}\n\n",
                            tool ? "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"Write\","
                                   "\"input\":{}}"
                                 : "{\"type\":\"text\",\"text\":\"\"}"));
        ev_end(e);
    }
    for (size_t off = 0; off < text.len;) {
        size_t n = piece(text, off);
        ag_str_t d = ag_str(text.ptr + off, n);
        if (api == API_CHAT) {
            must(ag_buf_appendf(b, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\","
                                   "\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,"
                                   "\"delta\":{"));
            if (tool) {
                must(ag_buf_appendf(b, "\"tool_calls\":[{\"index\":0,\"function\":{"
                                       "\"arguments\":"));
                json_str(b, d);
                must(ag_buf_appendf(b, "}}]"));
            } else {
                must(ag_buf_appendf(b, "\"content\":"));
                json_str(b, d);
            }
            must(ag_buf_appendf(b, "},\"finish_reason\":null}]}\n\n"));
        } else if (api == API_RESPONSES) {
            must(ag_buf_appendf(b, tool ? "event: response.function_call_arguments.delta\ndata: "
                                          "{\"type\":\"response.function_call_arguments.delta\","
                                          "\"item_id\":\"fc_1\",\"output_index\":0,\"delta\":"
                                        : "event: response.output_text.delta\ndata: {\"type\":"
                                          "\"response.output_text.delta\",\"item_id\":\"msg_1\","
                                          "\"output_index\":0,\"content_index\":0,\"delta\":"));
            json_str(b, d);
            must(ag_buf_appendf(b, ",\"sequence_number\":%u}\n\n", seq++));
        } else {
            must(ag_buf_appendf(b,
                                "event: content_block_delta\ndata: {\"type\":"
                                "\"content_block_delta\",\"index\":0,\"delta\":{\"type\":%s:",
                                tool ? "\"input_json_delta\",\"partial_json\""
                                     : "\"text_delta\",\"text\""));
            json_str(b, d);
            must(ag_buf_appendf(b, "}}\n\n"));
        }
        ev_end(e);
        off += n;
    }
    /* the event that completes the code: the closing fence went by as text (its release is the
     * event that carried it: the last delta), or the call ends here */
    e->release = tool ? e->n : e->n - 1;
    if (api == API_CHAT) {
        must(ag_buf_appendf(b,
                            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\","
                            "\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,"
                            "\"delta\":{},\"finish_reason\":\"%s\"}]}\n\n",
                            tool ? "tool_calls" : "stop"));
        ev_end(e);
        must(ag_buf_appendf(b, "data: [DONE]\n\n"));
        ev_end(e);
    } else if (api == API_RESPONSES) {
        if (tool) {
            must(ag_buf_appendf(b, "event: response.function_call_arguments.done\ndata: {\"type\":"
                                   "\"response.function_call_arguments.done\",\"item_id\":\"fc_1\","
                                   "\"output_index\":0,\"arguments\":"));
            json_str(b, text);
            must(ag_buf_appendf(b, ",\"sequence_number\":%u}\n\n", seq++));
            ev_end(e);
            must(ag_buf_appendf(b, "event: response.output_item.done\ndata: {\"type\":"
                                   "\"response.output_item.done\",\"output_index\":0,\"item\":{"
                                   "\"id\":\"fc_1\",\"type\":\"function_call\",\"call_id\":"
                                   "\"call_1\",\"name\":\"Write\",\"arguments\":"));
            json_str(b, text);
            must(
                ag_buf_appendf(b, ",\"status\":\"completed\"},\"sequence_number\":%u}\n\n", seq++));
            ev_end(e);
            must(ag_buf_appendf(b, "event: response.completed\ndata: {\"type\":"
                                   "\"response.completed\",\"response\":{\"id\":\"resp_1\","
                                   "\"model\":\"gpt-4o\",\"output\":[{\"id\":\"fc_1\",\"type\":"
                                   "\"function_call\",\"call_id\":\"call_1\",\"name\":\"Write\","
                                   "\"arguments\":"));
            json_str(b, text);
            must(ag_buf_appendf(b, ",\"status\":\"completed\"}]},\"sequence_number\":%u}\n\n",
                                seq++));
        } else {
            must(ag_buf_appendf(b, "event: response.output_text.done\ndata: {\"type\":"
                                   "\"response.output_text.done\",\"item_id\":\"msg_1\","
                                   "\"output_index\":0,\"content_index\":0,\"text\":"));
            json_str(b, text);
            must(ag_buf_appendf(b, ",\"sequence_number\":%u}\n\n", seq++));
            ev_end(e);
            must(ag_buf_appendf(b, "event: response.completed\ndata: {\"type\":"
                                   "\"response.completed\",\"response\":{\"id\":\"resp_1\","
                                   "\"model\":\"gpt-4o\",\"output\":[{\"type\":\"message\",\"id\":"
                                   "\"msg_1\",\"content\":[{\"type\":\"output_text\",\"text\":"));
            json_str(b, text);
            must(ag_buf_appendf(b, "}]}]},\"sequence_number\":%u}\n\n", seq++));
        }
        ev_end(e);
    } else {
        must(ag_buf_appendf(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\","
                               "\"index\":0}\n\n"));
        ev_end(e);
        must(ag_buf_appendf(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
        ev_end(e);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double median_us(uint64_t *v)
{
    qsort(v, PASSES, sizeof(uint64_t), cmp_u64);
    return (double)v[PASSES / 2] / 1000.0;
}

/* The ~2 KB file: a Mastra agent with long instructions, on a model the pack rewrites. */
static void agent_file(ag_buf_t *f)
{
    must(ag_buf_appendf(f, "import { openai } from '@ai-sdk/openai';\nimport { Agent } from "
                           "'@mastra/core/agent';\nimport { createTool } from "
                           "'@mastra/core/tools';\nimport { z } from 'zod';\n\n"));
    must(ag_buf_appendf(f, "const lookup = createTool({\n  id: 'lookup-order',\n  description: "
                           "'Find an order by its number',\n  inputSchema: z.object({ orderId: "
                           "z.string() }),\n  execute: async ({ context }) => {\n    const res = "
                           "await fetch(`https://shop.example.com/api/orders/${context.orderId}`);"
                           "\n    return res.json();\n  },\n});\n\n"));
    must(ag_buf_appendf(f, "export const supportAgent = new Agent({\n  name: 'Support Agent',\n"
                           "  instructions: `You are the support agent of an online shop.\n"));
    while (f->len < 1900)
        must(ag_buf_appendf(f, "  Answer in the customer's language, quote the order number, and "
                               "never promise a refund before checking the order status.\n"));
    must(ag_buf_appendf(f, "  `,\n  model: openai('gpt-4o'),\n  tools: { lookup },\n});\n"));
}

int main(int argc, char **argv)
{
    ag_tsalloc_install();
    if (argc != 2) {
        fprintf(stderr, "usage: bench_tools RULES\n");
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
    ag_engine_t *e = ag_engine_new(rules, NULL);
    ag_tools_t tools;
    memset(&tools, 0, sizeof(tools));
    ag_tools_presets(&tools);
    ag_buf_t file, text, args, out;
    ag_buf_init(&file, 1u << 20);
    ag_buf_init(&text, 1u << 20);
    ag_buf_init(&args, 1u << 20);
    ag_buf_init(&out, 1u << 24);
    agent_file(&file);
    must(ag_buf_appendf(&text, "Here is the agent:\n\n```ts\n%s```\n", file.ptr));
    must(ag_buf_appendf(&args, "{\"file_path\":\"src/mastra/agents/support.ts\",\"content\":"));
    json_str(&args, ag_buf_str(&file));
    must(ag_buf_appendf(&args, "}"));
    /* one engine rewrite of the file: the parse the hold ends with */
    uint64_t t_engine[PASSES];
    for (int p = 0; p < PASSES; p++) {
        ag_result_t res;
        ag_buf_reset(&out);
        uint64_t t0 = now_ns();
        must(ag_engine_rewrite(e, ag_buf_str(&text), &out, &res));
        t_engine[p] = now_ns() - t0;
    }
    double eng = median_us(t_engine);
    printf("file %zu bytes (%zu-byte deltas); arguments %zu bytes; %d passes, medians; engine "
           "rewrite of the file (one parse) %.1f us; hold: %s\n",
           file.len, (size_t)DELTA, args.len, PASSES, eng, hold_name);
    printf("%-18s %-6s %8s %12s %10s %12s %10s %9s\n", "api", "as", "events", "adapter us",
           "/ engine", "release us", "/ engine", "rewrites");
    static const char *const names[APIS] = {"chat.completions", "responses", "messages"};
    const ag_api_t *apis[APIS] = {&ag_api_openai_chat, &ag_api_openai_responses, &ag_api_anthropic};
    for (int a = 0; a < APIS; a++)
        for (int tool = 0; tool < 2; tool++) {
            events_t ev;
            memset(&ev, 0, sizeof(ev));
            build(&ev, a, tool ? ag_buf_str(&args) : ag_buf_str(&text), tool);
            uint64_t t_all[PASSES], t_rel[PASSES];
            uint32_t rewrites = 0;
            for (int p = 0; p < PASSES; p++) {
                ag_api_env_t env;
                memset(&env, 0, sizeof(env));
                env.engine = e;
                env.max_held = 4u << 20;
                env.hold = hold;
                env.tools = &tools;
                ag_api_stats_t st;
                memset(&st, 0, sizeof(st));
                ag_buf_reset(&out);
                uint64_t all = 0, rel = 0;
                uint64_t t0 = now_ns();
                void *s = apis[a]->stream_new(&env, &st);
                all += now_ns() - t0;
                bool ended = false;
                size_t from = 0;
                for (uint32_t i = 0; i < ev.n && !ended; i++) {
                    t0 = now_ns();
                    must(apis[a]->stream_feed(s, ag_str(ev.b.ptr + from, ev.end[i] - from), &out,
                                              &ended));
                    uint64_t dt = now_ns() - t0;
                    all += dt;
                    if (i == ev.release)
                        rel = dt;
                    from = ev.end[i];
                }
                t0 = now_ns();
                must(apis[a]->stream_end(s, &out));
                apis[a]->stream_free(s);
                all += now_ns() - t0;
                t_all[p] = all;
                t_rel[p] = rel;
                rewrites = st.rewrites;
            }
            double da = median_us(t_all), dr = median_us(t_rel);
            printf("%-18s %-6s %8u %12.1f %10.2f %12.1f %10.2f %9u\n", names[a],
                   tool ? "call" : "text", ev.n, da, da / eng, dr, dr / eng, rewrites);
            ag_buf_dispose(&ev.b);
        }
    ag_buf_dispose(&file);
    ag_buf_dispose(&text);
    ag_buf_dispose(&args);
    ag_buf_dispose(&out);
    ag_tools_dispose(&tools);
    ag_engine_free(e);
    ag_rules_free(rules);
    return 0;
}
