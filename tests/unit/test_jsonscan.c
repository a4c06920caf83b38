/* Unit tests for jsonscan.c: path patterns, locating values in real API bodies, sibling filters,
 * decoding with an offset map, splicing that keeps every other byte, malformed input and caps. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "json.h"
#include "jsonscan.h"

#define MAXM 64

static ag_buf_t buf, buf2;
static ag_jscan_match_t m[MAXM];
static size_t map[1 << 16];

static int setup(void **state)
{
    (void)state;
    ag_buf_init(&buf, 1 << 24);
    ag_buf_init(&buf2, 1 << 24);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ag_buf_dispose(&buf);
    ag_buf_dispose(&buf2);
    return 0;
}

static ag_jscan_path_t compile(const char *pat, unsigned types)
{
    ag_jscan_path_t p;
    assert_int_equal(ag_jscan_path_compile(&p, ag_cstr(pat), types), AG_OK);
    return p;
}

/* Finds the values at one pattern; returns the count (asserts success). */
static size_t find1(const char *json, const char *pat, unsigned types)
{
    ag_jscan_path_t p = compile(pat, types);
    size_t n = 999;
    assert_int_equal(ag_jscan_find(ag_cstr(json), &p, 1, m, MAXM, &n, NULL), AG_OK);
    assert_true(n <= MAXM);
    return n;
}

/* Decodes string match i of json into buf (reset first) and returns it as a C string. */
static const char *dec(const char *json, size_t i)
{
    size_t ml = 0;
    ag_buf_reset(&buf);
    assert_int_equal(m[i].type, AG_JSCAN_STRING);
    assert_int_equal(ag_jscan_decode(ag_cstr(json), m[i].off, m[i].len, &buf, map, 1 << 16, &ml),
                     AG_OK);
    assert_int_equal(ml, buf.len + 1);
    return buf.ptr ? buf.ptr : "";
}

static void expect_tok(const char *json, size_t i, const char *tok)
{
    assert_int_equal(m[i].len, strlen(tok));
    assert_memory_equal(json + m[i].off, tok, m[i].len);
}

/* Expects json to be rejected with the error at offset want. */
static void expect_bad(const char *json, size_t len, size_t want)
{
    size_t n = 0, pos = 12345;
    int rc = ag_jscan_find(ag_str(json, len), NULL, 0, NULL, 0, &n, &pos);
    if (rc != AG_EINVAL || pos != want)
        fail_msg("json %.*s: rc %d pos %zu, want EINVAL at %zu", (int)len, json, rc, pos, want);
}

static void expect_ok(const char *json, size_t len)
{
    size_t n = 7, pos = 0;
    int rc = ag_jscan_find(ag_str(json, len), NULL, 0, NULL, 0, &n, &pos);
    if (rc != AG_OK)
        fail_msg("json %.*s: rc %d at %zu", (int)len, json, rc, pos);
    assert_int_equal(n, 0);
}

/* ---- bodies from the wire formats (values illustrative) ---- */

static const char chat_n2[] =
    "{\n  \"id\": \"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\",\n  \"object\": \"chat.completion\",\n"
    "  \"created\": 1741569952,\n  \"model\": \"gpt-4.1-2025-04-14\",\n  \"choices\": [{\n"
    "    \"index\": 0,\n    \"message\": {\n      \"role\": \"assistant\",\n"
    "      \"content\": \"```ts\\nexport const x: number = 1;\\n```\",\n"
    "      \"refusal\": null,\n      \"annotations\": []\n    },\n    \"logprobs\": null,\n"
    "    \"finish_reason\": \"stop\"\n  }, {\n    \"index\": 1,\n    \"message\": {\n"
    "      \"role\": \"assistant\",\n      \"content\": \"const y = \\\"\\u00e9\\\";\",\n"
    "      \"refusal\": null,\n      \"annotations\": []\n    },\n    \"logprobs\": null,\n"
    "    \"finish_reason\": \"stop\"\n  }, {\n    \"index\": 2,\n    \"message\": {\n"
    "      \"role\": \"assistant\",\n      \"content\": null,\n      \"tool_calls\": []\n"
    "    },\n    \"finish_reason\": \"tool_calls\"\n  }],\n"
    "  \"usage\": {\"prompt_tokens\": 19, \"completion_tokens\": 10, \"total_tokens\": 29,\n"
    "            \"prompt_tokens_details\": {\"cached_tokens\": 0, \"audio_tokens\": 0}},\n"
    "  \"service_tier\": \"default\",\n  \"system_fingerprint\": \"fp_44709d6fcb\"\n}\n";

static void test_chat_nonstream(void **state)
{
    (void)state;
    size_t n = find1(chat_n2, "choices[*].message.content", AG_JSCAN_STRING);
    assert_int_equal(n, 2); /* the null content of choice 2 is not a string */
    assert_int_equal(m[0].nidx, 1);
    assert_int_equal(m[0].idx[0], 0);
    assert_int_equal(m[1].idx[0], 1);
    assert_string_equal(dec(chat_n2, 0), "```ts\nexport const x: number = 1;\n```");
    assert_string_equal(dec(chat_n2, 1), "const y = \"\xc3\xa9\";");
    expect_tok(chat_n2, 1, "\"const y = \\\"\\u00e9\\\";\"");
    assert_int_equal(m[0].key_len, strlen("\"content\""));
    assert_memory_equal(chat_n2 + m[0].key_off, "\"content\"", m[0].key_len);

    /* Without a type mask the null is found too, with its span. */
    n = find1(chat_n2, "choices[*].message.content", 0);
    assert_int_equal(n, 3);
    assert_int_equal(m[2].type, AG_JSCAN_NULL);
    assert_int_equal(m[2].idx[0], 2);
    expect_tok(chat_n2, 2, "null");

    /* Scalars at other paths. */
    n = find1(chat_n2, "choices[*].index", AG_JSCAN_NUMBER);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < 3; i++) {
        uint64_t v = 99;
        assert_int_equal(ag_jscan_get_u64(ag_cstr(chat_n2), &m[i], &v), AG_OK);
        assert_int_equal(v, i);
        assert_int_equal(m[i].idx[0], i);
    }
    n = find1(chat_n2, "model", AG_JSCAN_STRING);
    assert_int_equal(n, 1);
    assert_true(ag_jscan_str_eq(ag_cstr(chat_n2), &m[0], AG_STR_LIT("gpt-4.1-2025-04-14")));
    assert_false(ag_jscan_str_eq(ag_cstr(chat_n2), &m[0], AG_STR_LIT("gpt-4.1")));

    /* Containers are reported whole. */
    n = find1(chat_n2, "usage.prompt_tokens_details", 0);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].type, AG_JSCAN_OBJECT);
    expect_tok(chat_n2, 0, "{\"cached_tokens\": 0, \"audio_tokens\": 0}");
    n = find1(chat_n2, "choices[1]", 0);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].idx[0], 1);
    assert_int_equal(chat_n2[m[0].off], '{');
    assert_int_equal(chat_n2[m[0].off + m[0].len - 1], '}');
    assert_non_null(ag_memmem(ag_jscan_token(ag_cstr(chat_n2), &m[0]), AG_STR_LIT("\"index\": 1")));
    assert_null(ag_memmem(ag_jscan_token(ag_cstr(chat_n2), &m[0]), AG_STR_LIT("\"index\": 2")));
}

static const char chunk2[] =
    "{\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,"
    "\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":["
    "{\"index\":1,\"delta\":{\"content\":\" = "
    "1;\\n```\"},\"logprobs\":null,\"finish_reason\":null},"
    "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"```ts\\nconst x\","
    "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null},"
    "{\"index\":2,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
    "\"usage\":null,\"obfuscation\":\"k3Q\"}";

static void test_chat_chunk(void **state)
{
    (void)state;
    ag_jscan_path_t p[2] = {compile("choices[*].delta.content", AG_JSCAN_STRING),
                            compile("choices[*].index", AG_JSCAN_NUMBER)};
    size_t n = 0;
    assert_int_equal(ag_jscan_find(ag_cstr(chunk2), p, 2, m, MAXM, &n, NULL), AG_OK);
    /* Document order: index before content in each choice, content missing in the third. */
    assert_int_equal(n, 5);
    uint8_t want_path[] = {1, 0, 1, 0, 1};
    size_t want_idx[] = {0, 0, 1, 1, 2};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(m[i].path, want_path[i]);
        assert_int_equal(m[i].idx[0], want_idx[i]);
    }
    uint64_t v = 0;
    assert_int_equal(ag_jscan_get_u64(ag_cstr(chunk2), &m[0], &v), AG_OK);
    assert_int_equal(v, 1); /* the choice index field, not the array position */
    assert_string_equal(dec(chunk2, 1), " = 1;\n```");
    assert_string_equal(dec(chunk2, 3), "```ts\nconst x");
    /* Wildcard keys. */
    n = find1(chunk2, "choices[*].delta.*", 0);
    assert_int_equal(n, 4);
    assert_memory_equal(chunk2 + m[1].key_off, "\"role\"", 6);
    assert_int_equal(m[3].type, AG_JSCAN_NULL);
}

static const char responses[] =
    "{\n  \"id\": \"resp_67ccd2bed1ec8190\",\n  \"object\": \"response\",\n"
    "  \"created_at\": 1741476542,\n  \"status\": \"completed\",\n  \"error\": null,\n"
    "  \"model\": \"o4-mini\",\n  \"output\": [{\"type\": \"reasoning\", \"id\": \"rs_1\", "
    "\"summary\": [{\"type\": \"summary_text\", \"text\": \"Thinking about ts\"}]}, {\n"
    "    \"type\": \"message\",\n    \"id\": \"msg_67ccd2bf17f08190\",\n"
    "    \"status\": \"completed\",\n    \"role\": \"assistant\",\n"
    "    \"content\": [{\"type\": \"output_text\", \"text\": \"first\", \"annotations\": []},\n"
    "                {\"type\": \"refusal\", \"refusal\": \"no\"},\n"
    "                {\"annotations\": [], \"text\": \"```ts\\nconst x = 1;\\n```\", "
    "\"type\": \"output_text\"}]\n  }],\n  \"parallel_tool_calls\": true,\n"
    "  \"temperature\": 1.0,\n  \"usage\": {\"input_tokens\": 36, \"output_tokens\": 87}\n}";

static void test_responses_nonstream(void **state)
{
    (void)state;
    size_t n = find1(responses, "output[*].content[*]{type=output_text}.text", AG_JSCAN_STRING);
    assert_int_equal(n, 2);
    assert_int_equal(m[0].nidx, 2);
    assert_int_equal(m[0].idx[0], 1);
    assert_int_equal(m[0].idx[1], 0);
    assert_int_equal(m[1].idx[0], 1);
    assert_int_equal(m[1].idx[1], 2);
    assert_string_equal(dec(responses, 0), "first");
    assert_string_equal(dec(responses, 1), "```ts\nconst x = 1;\n```");
    /* The reasoning summary is text at another path; a wildcard reaches it. */
    n = find1(responses, "output[*].*[*].text", AG_JSCAN_STRING);
    assert_int_equal(n, 3);
    assert_string_equal(dec(responses, 0), "Thinking about ts");
    assert_int_equal(m[0].idx[0], 0);
    /* A filter on the output item as well. */
    n = find1(responses, "output[*]{type=message}.id", 0);
    assert_int_equal(n, 1);
    expect_tok(responses, 0, "\"msg_67ccd2bf17f08190\"");
    n = find1(responses, "temperature", 0);
    assert_int_equal(n, 1);
    expect_tok(responses, 0, "1.0");
    uint64_t v;
    assert_int_equal(ag_jscan_get_u64(ag_cstr(responses), &m[0], &v), AG_EINVAL);
}

static const char anthropic[] =
    "{\"id\": \"msg_013Zva2CMHLNnXjNJJKqJ2EF\", \"type\": \"message\", \"role\": \"assistant\", "
    "\"model\": \"claude-sonnet-4-5\", \"content\": ["
    "{\"type\": \"thinking\", \"thinking\": \"hmm\", \"signature\": \"sig\"}, "
    "{\"type\": \"text\", \"text\": \"Here:\\n```ts\\nconst x = 1;\\n```\", \"citations\": null}, "
    "{\"type\": \"tool_use\", \"id\": \"toolu_1\", \"name\": \"write_file\", "
    "\"input\": {\"path\": \"a.ts\", \"text\": \"const y = 2;\"}}, "
    "{\"text\": \"Done.\", \"type\": \"text\"}], "
    "\"stop_reason\": \"tool_use\", \"stop_sequence\": null, "
    "\"usage\": {\"input_tokens\": 2095, \"output_tokens\": 503}}";

static void test_anthropic_nonstream(void **state)
{
    (void)state;
    size_t n = find1(anthropic, "content[*]{type=text}.text", AG_JSCAN_STRING);
    assert_int_equal(n, 2);
    assert_int_equal(m[0].idx[0], 1);
    assert_int_equal(m[1].idx[0], 3); /* type after text */
    assert_string_equal(dec(anthropic, 0), "Here:\n```ts\nconst x = 1;\n```");
    assert_string_equal(dec(anthropic, 1), "Done.");
    /* Without the filter nothing inside tool_use.input is reached, but the filter is what keeps
     * a text key on another block type out. */
    n = find1(anthropic, "content[*].input.text", AG_JSCAN_STRING);
    assert_int_equal(n, 1);
    n = find1(anthropic, "content[*]{type=tool_use}.input.text", AG_JSCAN_STRING);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].idx[0], 2);
    n = find1(anthropic, "content[*]{type=text}.input.text", AG_JSCAN_STRING);
    assert_int_equal(n, 0);
    /* Whole blocks by type. */
    n = find1(anthropic, "content[*]{type=tool_use}", 0);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].type, AG_JSCAN_OBJECT);
    assert_int_equal(anthropic[m[0].off + m[0].len - 1], '}');
    assert_int_equal(anthropic[m[0].off + m[0].len], ',');
}

static void test_stream_events(void **state)
{
    (void)state;
    static const char done[] =
        "{\"type\":\"response.output_text.done\",\"item_id\":\"msg_1\",\"output_index\":0,"
        "\"content_index\":0,\"text\":\"const x = 1;\",\"logprobs\":[],\"sequence_number\":6}";
    static const char part_done[] =
        "{\"type\":\"response.content_part.done\",\"item_id\":\"msg_1\",\"output_index\":0,"
        "\"content_index\":0,\"part\":{\"type\":\"output_text\",\"annotations\":[],"
        "\"logprobs\":[],\"text\":\"const x = 1;\"},\"sequence_number\":7}";
    static const char item_done[] =
        "{\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"id\":\"msg_1\","
        "\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type"
        "\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":\"const x = 1;\"}]},"
        "\"sequence_number\":8}";
    static const char completed[] =
        "{\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"object\":\"response\","
        "\"status\":\"completed\",\"output\":[{\"id\":\"msg_1\",\"type\":\"message\",\"status\":"
        "\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"annotations"
        "\":[],\"logprobs\":[],\"text\":\"const x = 1;\"}]}],\"usage\":{\"input_tokens\":5,"
        "\"output_tokens\":4,\"total_tokens\":9}, \"...\": "
        "\"\xe2\x80\xa6\"},\"sequence_number\":9}";
    static const char delta[] =
        "{\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", "
        "\"text\": \"Hello\"}}";

    /* One set of paths, each body matching only its own. */
    ag_jscan_path_t p[6] = {
        compile("{type=response.output_text.done}text", AG_JSCAN_STRING),
        compile("{type=response.content_part.done}part{type=output_text}.text", AG_JSCAN_STRING),
        compile("item.content[*]{type=output_text}.text", AG_JSCAN_STRING),
        compile("response.output[*].content[*]{type=output_text}.text", AG_JSCAN_STRING),
        compile("{type=content_block_delta}delta{type=text_delta}.text", AG_JSCAN_STRING),
        compile("sequence_number", AG_JSCAN_NUMBER),
    };
    const char *bodies[] = {done, part_done, item_done, completed, delta};
    uint64_t seq[] = {6, 7, 8, 9};
    for (size_t b = 0; b < 5; b++) {
        size_t n = 0;
        assert_int_equal(ag_jscan_find(ag_cstr(bodies[b]), p, 6, m, MAXM, &n, NULL), AG_OK);
        assert_int_equal(n, b < 4 ? 2 : 1);
        assert_int_equal(m[0].path, b);
        assert_string_equal(dec(bodies[b], 0), b < 4 ? "const x = 1;" : "Hello");
        if (b < 4) {
            uint64_t v = 0;
            assert_int_equal(m[1].path, 5);
            assert_int_equal(ag_jscan_get_u64(ag_cstr(bodies[b]), &m[1], &v), AG_OK);
            assert_int_equal(v, seq[b]);
        }
    }

    /* Rewrite the completed text and renumber sequence_number in one pass. */
    size_t n = 0, ml = 0;
    ag_jscan_path_t q[2] = {p[3], p[5]};
    assert_int_equal(ag_jscan_find(ag_cstr(completed), q, 2, m, MAXM, &n, NULL), AG_OK);
    assert_int_equal(n, 2);
    ag_buf_reset(&buf);
    assert_int_equal(
        ag_jscan_decode(ag_cstr(completed), m[0].off, m[0].len, &buf, map, 1 << 16, &ml), AG_OK);
    ag_jscan_edit_t ed = {6, 7, AG_STR_LIT("y")};
    ag_jscan_splice_t sp[2] = {{m[0].off, m[0].len, map, ml, &ed, 1, {NULL, 0}},
                               {m[1].off, m[1].len, NULL, 0, NULL, 0, AG_STR_LIT("12")}};
    ag_buf_reset(&buf2);
    assert_int_equal(ag_jscan_splice(ag_cstr(completed), sp, 2, &buf2), AG_OK);
    char want[sizeof(completed) + 8];
    snprintf(want, sizeof(want), "%s", completed);
    char *t = strstr(want, "const x = 1;");
    t[6] = 'y';
    memcpy(strstr(want, "\"sequence_number\":9}") + 18, "12}", 4);
    assert_string_equal(buf2.ptr, want);
}

/* ---- sibling filters ---- */

static void test_filter_order_and_dups(void **state)
{
    (void)state;
    static const char j[] =
        "[{\"type\":\"text\",\"text\":\"a\"},{\"text\":\"b\",\"type\":\"text\"},"
        "{\"text\":\"c\",\"type\":\"image\"},{\"type\":\"image\",\"text\":\"d\"},"
        "{\"text\":\"e\"},{\"type\":\"text\",\"text\":\"f\",\"type\":\"x\"},"
        "{\"type\":\"x\",\"text\":\"g\",\"type\":\"t\\u0065xt\"},{\"type\":1,\"text\":\"h\"},"
        "{\"type\":{\"type\":\"text\"},\"text\":\"i\"},{\"type\":\"text \",\"text\":\"j\"},"
        "\"text\",[{\"type\":\"text\",\"text\":\"k\"}],"
        "{\"type\":\"text\",\"text\":\"l1\",\"text\":\"l2\"}]";
    size_t n = find1(j, "[*]{type=text}.text", 0);
    const char *want[] = {"a", "b", "g", "l1", "l2"};
    size_t want_idx[] = {0, 1, 6, 12, 12};
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(dec(j, i), want[i]);
        assert_int_equal(m[i].idx[0], want_idx[i]);
    }
    /* Two filters on the same object, and a filter on the root. */
    static const char k[] =
        "{\"a\":[{\"x\":\"1\",\"v\":\"A\",\"y\":\"2\"},{\"x\":\"1\",\"v\":\"B\"},"
        "{\"y\":\"2\",\"v\":\"C\",\"x\":\"1\"}],\"kind\":\"z\"}";
    n = find1(k, "a[*]{x=1}{y=2}.v", 0);
    assert_int_equal(n, 2);
    assert_string_equal(dec(k, 0), "A");
    assert_string_equal(dec(k, 1), "C");
    assert_int_equal(find1(k, "{kind=z}a[1].v", 0), 1);
    assert_int_equal(find1(k, "{kind=y}a[1].v", 0), 0);
    assert_int_equal(find1(k, "{kind=z}", 0), 1);
    assert_int_equal(m[0].off, 0);
    assert_int_equal(m[0].len, strlen(k));
    /* Empty filter value. */
    assert_int_equal(find1("{\"t\":\"\",\"v\":1}", "{t=}v", 0), 1);
}

static void test_filter_interleaved_paths(void **state)
{
    (void)state;
    /* Matches of a path whose filter fails are dropped; other paths' matches in between stay in
     * order. */
    static const char j[] = "{\"c\":[{\"v\":\"1\",\"w\":\"2\",\"v\":\"3\",\"t\":\"no\"},"
                            "{\"v\":\"4\",\"w\":\"5\",\"t\":\"yes\"}]}";
    ag_jscan_path_t p[3] = {compile("c[*]{t=yes}.v", 0), compile("c[*].w", 0),
                            compile("c[*]{t=no}", 0)};
    size_t n = 0;
    assert_int_equal(ag_jscan_find(ag_cstr(j), p, 3, m, MAXM, &n, NULL), AG_OK);
    assert_int_equal(n, 4);
    assert_int_equal(m[0].path, 2);
    assert_int_equal(m[0].idx[0], 0);
    assert_int_equal(j[m[0].off + m[0].len - 1], '}');
    assert_int_equal(j[m[0].off + m[0].len], ',');
    assert_int_equal(m[1].path, 1);
    assert_string_equal(dec(j, 1), "2");
    assert_int_equal(m[2].path, 0);
    assert_string_equal(dec(j, 2), "4");
    assert_int_equal(m[3].path, 1);
    assert_string_equal(dec(j, 3), "5");
}

/* ---- path patterns ---- */

static void test_path_compile(void **state)
{
    (void)state;
    ag_jscan_path_t p;
    const char *bad[] = {"a..b", "a[", "a[x]", "a[*", "a[]", "{=x}a",   "{x}a", "{x=1",
                         "a.",   "a]", "a=b",  "a\\", ".",   "a{x=1}b", "[*]b", "a}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ag_jscan_path_compile(&p, ag_cstr(bad[i]), 0) != AG_EINVAL)
            fail_msg("pattern %s accepted", bad[i]);
    }
    assert_int_equal(ag_jscan_path_compile(&p, AG_STR_LIT("a"), 128), AG_EINVAL);
    assert_int_equal(ag_jscan_path_compile(&p, AG_STR_LIT("a[*][*][*][*][*]"), 0), AG_ETOOBIG);
    assert_int_equal(ag_jscan_path_compile(&p, AG_STR_LIT("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p"), 0),
                     AG_OK);
    assert_int_equal(ag_jscan_path_compile(&p, AG_STR_LIT("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q"), 0),
                     AG_ETOOBIG);
    assert_int_equal(ag_jscan_path_compile(&p, AG_STR_LIT("{a=1}{b=2}{c=3}{d=4}{e=5}"), 0),
                     AG_ETOOBIG);
    char longkey[AG_JSCAN_PATH_TEXT + 2];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    assert_int_equal(ag_jscan_path_compile(&p, ag_cstr(longkey), 0), AG_ETOOBIG);

    /* Escapes, literal star, leading dot, index steps at the root. */
    static const char j[] = "{\"a.b\":1,\"*\":2,\"x\":3,\"q\\\"r\":4,\"\\u0078\":5}";
    assert_int_equal(find1(j, "a\\.b", 0), 1);
    expect_tok(j, 0, "1");
    assert_int_equal(find1(j, "\\*", 0), 1);
    expect_tok(j, 0, "2");
    assert_int_equal(find1(j, ".x", 0), 2); /* "\u0078" is "x" too */
    expect_tok(j, 0, "3");
    expect_tok(j, 1, "5");
    assert_memory_equal(j + m[1].key_off, "\"\\u0078\"", 8);
    assert_int_equal(find1(j, "q\"r", 0), 1);
    assert_int_equal(find1(j, "*", 0), 5);
    assert_int_equal(find1("[[1,2],[3,4]]", "[1][0]", 0), 1);
    expect_tok("[[1,2],[3,4]]", 0, "3");
    assert_int_equal(m[0].nidx, 2);
    assert_int_equal(m[0].idx[0], 1);
    assert_int_equal(m[0].idx[1], 0);
    assert_int_equal(m[0].key_len, 0);
    assert_int_equal(find1("[[1,2],[3,4]]", "", 0), 1);
    assert_int_equal(m[0].len, 13);
    assert_int_equal(find1(" \"s\" ", "", AG_JSCAN_STRING), 1);
    expect_tok(" \"s\" ", 0, "\"s\"");
    assert_int_equal(find1(" \"s\" ", "", AG_JSCAN_NUMBER), 0);
}

static void test_duplicates_and_nesting(void **state)
{
    (void)state;
    static const char j[] = "{\"a\":{\"b\":\"1\"},\"a\":{\"b\":\"2\",\"b\":\"3\"},\"a\":7}";
    assert_int_equal(find1(j, "a.b", 0), 3);
    assert_string_equal(dec(j, 0), "1");
    assert_string_equal(dec(j, 2), "3");
    /* A container and a value inside it: ordered by first byte. */
    ag_jscan_path_t p[2] = {compile("a.b", 0), compile("a", AG_JSCAN_OBJECT)};
    size_t n = 0;
    assert_int_equal(ag_jscan_find(ag_cstr(j), p, 2, m, MAXM, &n, NULL), AG_OK);
    assert_int_equal(n, 5);
    uint8_t want[] = {1, 0, 1, 0, 0};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(m[i].path, want[i]);
    expect_tok(j, 2, "{\"b\":\"2\",\"b\":\"3\"}");
}

/* ---- decoding and the offset map ---- */

static void test_decode_map(void **state)
{
    (void)state;
    /* offsets:    0 1 2  4  6  8   14        26 28 30  */
    static const char j[] = "\"a\\n\\\"\\\\\\u00e9\\ud83d\\ude00\\/\xc3\xa9\xf0\x9f\x98\x80z\"";
    size_t n = find1(j, "", AG_JSCAN_STRING);
    assert_int_equal(n, 1);
    const char *d = dec(j, 0);
    static const char want[] = "a\n\"\\\xc3\xa9\xf0\x9f\x98\x80/\xc3\xa9\xf0\x9f\x98\x80z";
    assert_int_equal(buf.len, sizeof(want) - 1);
    assert_memory_equal(d, want, buf.len);
    size_t want_map[] = {1, 2, 4, 6, 8, 8, 14, 14, 14, 14, 26, 28, 28, 30, 30, 30, 30, 34, 35};
    assert_int_equal(sizeof(want_map) / sizeof(want_map[0]), buf.len + 1);
    for (size_t i = 0; i <= buf.len; i++) {
        if (map[i] != want_map[i])
            fail_msg("map[%zu] = %zu, want %zu", i, map[i], want_map[i]);
    }
    assert_int_equal(j[map[buf.len]], '"');

    /* Lone and misordered surrogates become U+FFFD; a pair after a lone high one still pairs. */
    static const char k[] = "\"\\ud83dx\\ude00\\ud83d\\ud83d\\ude00\\u0000\"";
    ag_buf_reset(&buf);
    size_t ml = 0;
    assert_int_equal(ag_jscan_decode(ag_cstr(k), 0, strlen(k), &buf, map, 1 << 16, &ml), AG_OK);
    static const char kw[] = "\xef\xbf\xbdx\xef\xbf\xbd\xef\xbf\xbd\xf0\x9f\x98\x80";
    assert_int_equal(buf.len, sizeof(kw)); /* plus the NUL of \u0000 */
    assert_memory_equal(buf.ptr, kw, sizeof(kw));
    assert_int_equal(map[0], 1);
    assert_int_equal(map[3], 7);
    assert_int_equal(map[4], 8);
    assert_int_equal(map[7], 14);
    assert_int_equal(map[10], 20);
    assert_int_equal(map[14], 32);
    assert_int_equal(map[15], strlen(k) - 1);
    assert_int_equal(ml, 16);

    /* Appends after existing contents; map indexes the new bytes only. */
    ag_buf_reset(&buf);
    assert_int_equal(ag_buf_append(&buf, "xy", 2), AG_OK);
    assert_int_equal(ag_jscan_decode(AG_STR_LIT("[\"ab\"]"), 1, 4, &buf, map, 8, &ml), AG_OK);
    assert_string_equal(buf.ptr, "xyab");
    assert_int_equal(ml, 3);
    assert_int_equal(map[0], 2);
    assert_int_equal(map[2], 4);
    /* map may be NULL. */
    ag_buf_reset(&buf);
    assert_int_equal(ag_jscan_decode(AG_STR_LIT("\"\\t\""), 0, 4, &buf, NULL, 0, NULL), AG_OK);
    assert_string_equal(buf.ptr, "\t");
}

static void test_decode_rejects(void **state)
{
    (void)state;
    const char *bad[] = {"\"a\\x\"",         "\"\\u12g4\"", "\"a\"b\"", "\"\x01\"", "\"\xc3\"",
                         "\"\xed\xa0\x80\"", "\"\\\"",      "x",        "\"",       "\"a\\u12\""};
    ag_buf_reset(&buf);
    assert_int_equal(ag_buf_append(&buf, "keep", 4), AG_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t ml = 77;
        int rc = ag_jscan_decode(ag_cstr(bad[i]), 0, strlen(bad[i]), &buf, map, 100, &ml);
        if (rc != AG_EINVAL)
            fail_msg("decode of %s: %d", bad[i], rc);
        assert_int_equal(ml, 77);
        assert_string_equal(buf.ptr, "keep");
    }
    /* Span outside the text. */
    assert_int_equal(ag_jscan_decode(AG_STR_LIT("\"ab\""), 1, 4, &buf, map, 100, NULL), AG_EINVAL);
}

/* Runs of plain bytes are skipped 8 at a time: put every kind of special byte at every
 * alignment and compare with json.c's decoder. */
static void test_decode_alignment(void **state)
{
    (void)state;
    const char *specials[] = {"\\n", "\\\"",          "\\u00e9", "\xc3\xa9", "\xf0\x9f\x98\x80",
                              "\\/", "\\ud83d\\ude00"};
    for (size_t s = 0; s < sizeof(specials) / sizeof(specials[0]); s++) {
        for (size_t pre = 0; pre < 20; pre++) {
            char j[128];
            size_t k = 0;
            j[k++] = '"';
            for (size_t i = 0; i < pre; i++)
                j[k++] = (char)('a' + i % 26);
            k += (size_t)snprintf(j + k, sizeof(j) - k, "%s0123456789abcdefgh\"", specials[s]);
            size_t ml = 0, n = 0;
            assert_int_equal(ag_jscan_find(ag_str(j, k), NULL, 0, NULL, 0, &n, NULL), AG_OK);
            ag_buf_reset(&buf);
            ag_buf_reset(&buf2);
            assert_int_equal(ag_jscan_decode(ag_str(j, k), 0, k, &buf, map, 128, &ml), AG_OK);
            assert_int_equal(ag_json_decode_str(ag_str(j + 1, k - 2), &buf2), AG_OK);
            assert_int_equal(buf.len, buf2.len);
            assert_memory_equal(buf.ptr, buf2.ptr, buf.len);
            assert_int_equal(map[pre], pre + 1); /* the special's first raw byte */
        }
    }
}

/* ---- splicing ---- */

/* Splices one edit list into string match 0 of json (decoded into buf) and returns buf2. */
static const char *splice1(const char *json, const ag_jscan_edit_t *ed, size_t ned)
{
    size_t ml = 0;
    ag_buf_reset(&buf);
    assert_int_equal(ag_jscan_decode(ag_cstr(json), m[0].off, m[0].len, &buf, map, 1 << 16, &ml),
                     AG_OK);
    ag_jscan_splice_t sp = {m[0].off, m[0].len, map, ml, ed, ned, {NULL, 0}};
    ag_buf_reset(&buf2);
    assert_int_equal(ag_jscan_splice(ag_cstr(json), &sp, 1, &buf2), AG_OK);
    return buf2.ptr;
}

static void test_splice_keeps_bytes(void **state)
{
    (void)state;
    size_t n = find1(chat_n2, "choices[*].message.content", AG_JSCAN_STRING);
    assert_int_equal(n, 2);
    /* Decoded "```ts\nexport const x: number = 1;\n```": replace "number" with "string",
     * insert a line after "ts\n", delete the trailing "\n```". */
    ag_jscan_edit_t ed[] = {{6, 6, AG_STR_LIT("// \"gen\"\t\\\n")},
                            {22, 28, AG_STR_LIT("string")},
                            {33, 37, AG_STR_LIT("")}};
    const char *out = splice1(chat_n2, ed, 3);
    const char *tok = "\"```ts\\n// \\\"gen\\\"\\t\\\\\\nexport const x: string = 1;\"";
    size_t pre = m[0].off, post = m[0].off + m[0].len;
    assert_int_equal(buf2.len, pre + strlen(tok) + strlen(chat_n2) - post);
    assert_memory_equal(out, chat_n2, pre);
    assert_memory_equal(out + pre, tok, strlen(tok));
    assert_string_equal(out + pre + strlen(tok), chat_n2 + post);
    /* The result re-locates and decodes to the edited text. */
    n = find1(out, "choices[*].message.content", AG_JSCAN_STRING);
    assert_int_equal(n, 2);
    char copy[sizeof(chat_n2) + 64];
    snprintf(copy, sizeof(copy), "%s", out);
    assert_string_equal(dec(copy, 0), "```ts\n// \"gen\"\t\\\nexport const x: string = 1;");

    /* No edits: the same bytes. */
    find1(chat_n2, "choices[*].message.content", AG_JSCAN_STRING);
    assert_string_equal(splice1(chat_n2, NULL, 0), chat_n2);
    /* Editing around escapes: decoded `const y = "é";` → replace `"é"` keeps neighbours. */
    find1(chat_n2, "choices[1].message.content", AG_JSCAN_STRING);
    ag_jscan_edit_t e2 = {10, 14, AG_STR_LIT("'\xc3\xbc'")};
    out = splice1(chat_n2, &e2, 1);
    assert_non_null(strstr(out, "\"const y = '\\u00fc';\""));
}

static void test_splice_styles(void **state)
{
    (void)state;
    struct {
        const char *json, *repl, *want;
        size_t a, b;
    } c[] = {
        /* \u-only original: non-ASCII escaped, astral as a surrogate pair. */
        {"{\"t\":\"caf\\u00e9 x\"}", "\xc3\xa9\xf0\x9f\x98\x80/",
         "{\"t\":\"caf\\u00e9\\u00e9\\ud83d\\ude00/x\"}", 5, 6},
        /* Upper-case hex mimicked. */
        {"{\"t\":\"caf\\u00E9 x\"}", "\xe2\x82\xac\x01", "{\"t\":\"caf\\u00E9\\u20AC\\u0001x\"}", 5,
         6},
        /* Raw UTF-8 original (also has a \u escape): replacement stays raw. */
        {"{\"t\":\"\xc3\xa9\\u00e9 x\"}", "\xf0\x9f\x98\x80",
         "{\"t\":\"\xc3\xa9\\u00e9\xf0\x9f\x98\x80x\"}", 4, 5},
        /* Only ASCII escapes (\u0001 < 0x80): raw UTF-8. */
        {"{\"t\":\"\\u0001 x\"}", "\xc3\xa9", "{\"t\":\"\\u0001\xc3\xa9x\"}", 1, 2},
        /* Escaped slashes mimicked; not when a raw slash is present. */
        {"{\"t\":\"a\\/b x\"}", "</script>", "{\"t\":\"a\\/b<\\/script>x\"}", 3, 4},
        {"{\"t\":\"a\\/b/ x\"}", "</s>", "{\"t\":\"a\\/b/</s>x\"}", 4, 5},
        /* Invalid UTF-8 in the replacement becomes U+FFFD, per byte. */
        {"{\"t\":\"ab\"}", "\xff\xc3", "{\"t\":\"a\xef\xbf\xbd\xef\xbf\xbd\"}", 1, 2},
        {"{\"t\":\"\\u00e9b\"}", "\xff", "{\"t\":\"\\u00e9\\ufffd\"}", 2, 3},
        /* Replacing a surrogate-pair character as a whole. */
        {"{\"t\":\"a\\ud83d\\ude00b\"}", "X", "{\"t\":\"aXb\"}", 1, 5},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        assert_int_equal(find1(c[i].json, "t", AG_JSCAN_STRING), 1);
        ag_jscan_edit_t ed = {c[i].a, c[i].b, ag_cstr(c[i].repl)};
        const char *out = splice1(c[i].json, &ed, 1);
        if (strcmp(out, c[i].want) != 0)
            fail_msg("case %zu: got %s want %s", i, out, c[i].want);
    }
    /* Deleting what separates two lone surrogate escapes must not pair them: the high one is
     * rewritten as \ufffd (same length, same decoded text); nothing else changes. */
    static const char lone[] = "{\"t\":\"\\ud83dx\\ude01\"}";
    assert_int_equal(find1(lone, "t", 0), 1);
    ag_jscan_edit_t del = {3, 4, AG_STR_LIT("")};
    assert_string_equal(splice1(lone, &del, 1), "{\"t\":\"\\ufffd\\ude01\"}");
    ag_jscan_edit_t del2[] = {{3, 4, AG_STR_LIT("")}, {4, 4, AG_STR_LIT("")}};
    assert_string_equal(splice1(lone, del2, 2), "{\"t\":\"\\ufffd\\ude01\"}");
    ag_jscan_edit_t keep = {3, 4, AG_STR_LIT("y")};
    assert_string_equal(splice1(lone, &keep, 1), "{\"t\":\"\\ud83dy\\ude01\"}");
    static const char lone_up[] = "{\"t\":\"\\uD83Dx\\uDE01\"}";
    assert_int_equal(find1(lone_up, "t", 0), 1);
    assert_string_equal(splice1(lone_up, &del, 1), "{\"t\":\"\\uFFFD\\uDE01\"}");
    assert_int_equal(ag_jscan_str_style(AG_STR_LIT("\"\\u00E9\\u00ab\""), 0, 14),
                     AG_JSCAN_ESC_ASCII);
    assert_int_equal(ag_jscan_str_style(AG_STR_LIT("\"\\/\\u00C9\""), 0, 10),
                     AG_JSCAN_ESC_ASCII | AG_JSCAN_ESC_SLASH | AG_JSCAN_ESC_UPPER);
    assert_int_equal(ag_jscan_str_style(AG_STR_LIT("xx"), 0, 2), 0);
    /* Control characters always get escapes, lower-case hex by default. */
    ag_buf_reset(&buf);
    assert_int_equal(ag_jscan_escape(&buf, AG_STR_LIT("\b\f\n\r\t\x1f\x7f\"\\/"), 0), AG_OK);
    assert_string_equal(buf.ptr, "\\b\\f\\n\\r\\t\\u001f\x7f\\\"\\\\/");
}

static void test_splice_many(void **state)
{
    (void)state;
    size_t n = find1(responses, "output[*].content[*]{type=output_text}.text", AG_JSCAN_STRING);
    assert_int_equal(n, 2);
    static size_t map2[256];
    size_t ml0 = 0, ml1 = 0;
    ag_buf_reset(&buf);
    assert_int_equal(ag_jscan_decode(ag_cstr(responses), m[0].off, m[0].len, &buf, map, 256, &ml0),
                     AG_OK);
    assert_int_equal(ag_jscan_decode(ag_cstr(responses), m[1].off, m[1].len, &buf, map2, 256, &ml1),
                     AG_OK);
    ag_jscan_edit_t e0 = {0, 5, AG_STR_LIT("1st")};
    ag_jscan_edit_t e1[] = {{0, 0, AG_STR_LIT(">")}, {12, 13, AG_STR_LIT("y")}};
    ag_jscan_splice_t sp[] = {{m[0].off, m[0].len, map, ml0, &e0, 1, {NULL, 0}},
                              {m[1].off, m[1].len, map2, ml1, e1, 2, {NULL, 0}}};
    ag_buf_reset(&buf2);
    assert_int_equal(ag_jscan_splice(ag_cstr(responses), sp, 2, &buf2), AG_OK);
    /* Expected: the original with exactly these two token contents changed. */
    char want[sizeof(responses) + 16];
    size_t k = 0, a0 = m[0].off, b0 = m[0].off + m[0].len, a1 = m[1].off, b1 = m[1].off + m[1].len;
    memcpy(want, responses, a0), k = a0;
    k += (size_t)sprintf(want + k, "\"1st\"");
    memcpy(want + k, responses + b0, a1 - b0), k += a1 - b0;
    k += (size_t)sprintf(want + k, "\">```ts\\nconst y = 1;\\n```\"");
    memcpy(want + k, responses + b1, sizeof(responses) - b1);
    assert_string_equal(buf2.ptr, want);

    /* Out of order or overlapping spans, bad edits and bad maps are refused, out untouched. */
    ag_jscan_splice_t rev[] = {sp[1], sp[0]};
    ag_buf_reset(&buf2);
    assert_int_equal(ag_buf_append(&buf2, "keep", 4), AG_OK);
    assert_int_equal(ag_jscan_splice(ag_cstr(responses), rev, 2, &buf2), AG_EINVAL);
    ag_jscan_edit_t overlap[] = {{0, 3, AG_STR_LIT("")}, {2, 4, AG_STR_LIT("")}};
    ag_jscan_edit_t range = {0, ml0, AG_STR_LIT("")};
    ag_jscan_splice_t bads[] = {{m[0].off, m[0].len, map, ml0, overlap, 2, {NULL, 0}},
                                {m[0].off, m[0].len, map, ml0, &range, 1, {NULL, 0}},
                                {m[0].off, m[0].len - 1, map, ml0, NULL, 0, {NULL, 0}},
                                {m[0].off, m[0].len, map, 0, NULL, 0, {NULL, 0}},
                                {sizeof(responses), 2, NULL, 0, NULL, 0, {NULL, 0}}};
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        if (ag_jscan_splice(ag_cstr(responses), &bads[i], 1, &buf2) != AG_EINVAL)
            fail_msg("bad splice %zu accepted", i);
        assert_string_equal(buf2.ptr, "keep");
    }
    /* An edit boundary inside a multi-byte character. */
    static const char j[] = "{\"t\":\"\xc3\xa9\\ud83d\\ude00\"}";
    assert_int_equal(find1(j, "t", 0), 1);
    ag_buf_reset(&buf);
    assert_int_equal(ag_jscan_decode(ag_cstr(j), m[0].off, m[0].len, &buf, map, 64, &ml0), AG_OK);
    for (size_t a = 0; a <= 6; a++) {
        ag_jscan_edit_t e = {a, 6, AG_STR_LIT("")};
        ag_jscan_splice_t s1 = {m[0].off, m[0].len, map, ml0, &e, 1, {NULL, 0}};
        ag_buf_reset(&buf2);
        int rc = ag_jscan_splice(ag_cstr(j), &s1, 1, &buf2);
        assert_int_equal(rc, a == 0 || a == 2 || a == 6 ? AG_OK : AG_EINVAL);
    }
}

/* ---- malformed input ---- */

static void test_malformed(void **state)
{
    (void)state;
    struct {
        const char *j;
        size_t pos;
    } c[] = {
        {"{\"a\":1,}", 7},           /* trailing comma in an object */
        {"[1,2,]", 5},               /* trailing comma in an array */
        {"{\"a\":\"xyz", 9},         /* unterminated string */
        {"{\"a\":\"x\\qz\"}", 7},    /* bad escape */
        {"{\"a\":\"x\\u12z4\"}", 7}, /* bad \u escape */
        {"[\"a\tb\"]", 3},           /* raw control byte in a string */
        {"[\"a\nb\"]", 3},
        {"[\"\xc3\x28\"]", 2},     /* invalid UTF-8 */
        {"[\"\xed\xa0\x80\"]", 2}, /* encoded surrogate */
        {"[\"\xc0\xaf\"]", 2},     /* overlong */
        {"", 0},
        {"   ", 3},
        {"{\"a\" 1}", 5},         /* missing colon */
        {"{a:1}", 1},             /* unquoted key */
        {"{\"a\":1 \"b\":2}", 7}, /* missing comma */
        {"[1 2]", 3},
        {"[01]", 2}, /* leading zero */
        {"[-]", 2},
        {"[1.]", 3},
        {"[.5]", 1},
        {"[1e]", 3},
        {"[+1]", 1},
        {"[tru]", 4},
        {"[nul", 4},
        {"[True]", 1},
        {"{} {}", 3}, /* two values */
        {"[1]]", 3},
        {"[1}", 2},
        {"{\"a\":1]", 6},
        {"\xef\xbb\xbf{}", 0}, /* byte order mark */
        {"[NaN]", 1},
        {"{\"a\":}", 5},
        {"[", 1},
        {"{\"a\"", 4},
        {"\"abc\\", 5}, /* cut inside an escape: ends early */
        {"\"ab\\u1", 6},
        {"\"ab\\u1x", 3},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
        expect_bad(c[i].j, strlen(c[i].j), c[i].pos);
    expect_bad("[\"a\0b\"]", 7, 3); /* NUL is a control byte */

    /* Depth: 64 nested containers are fine, 65 are not (error at the 65th bracket). */
    char deep[2 * 65 + 1];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    expect_ok(deep, 128);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    expect_bad(deep, 130, 64);
    /* Also through objects. */
    ag_buf_reset(&buf);
    for (int i = 0; i < 65; i++)
        assert_int_equal(ag_buf_append(&buf, "{\"a\":", 5), AG_OK);
    assert_int_equal(ag_buf_append(&buf, "1", 1), AG_OK);
    for (int i = 0; i < 65; i++)
        assert_int_equal(ag_buf_append(&buf, "}", 1), AG_OK);
    expect_bad(buf.ptr, buf.len, 64 * 5);
    expect_ok(buf.ptr + 5, buf.len - 6);

    /* Valid corner cases. */
    const char *good[] = {"0",
                          "-0",
                          "-0.0e+0",
                          "1E-7",
                          "[]",
                          "{}",
                          " [ ] ",
                          "\"\"",
                          "null",
                          "[true,false,null]",
                          "{\"\":\"\"}",
                          "\"\\ud800\"",
                          "\"\xf4\x8f\xbf\xbf\"",
                          "\"\x7f\"",
                          "\r\n\t[1]\r\n\t"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        expect_ok(good[i], strlen(good[i]));
    /* Errors in a body with paths reached are reported the same. */
    ag_jscan_path_t p = compile("choices[*].message.content", 0);
    size_t n = 0, pos = 0;
    char trunc[sizeof(chat_n2)];
    memcpy(trunc, chat_n2, sizeof(chat_n2));
    char *x = strstr(trunc, "\"refusal\": null,");
    x[15] = ' ';
    x[-3] = '\x02'; /* a control byte inside the first content string */
    assert_int_equal(ag_jscan_find(ag_cstr(trunc), &p, 1, m, MAXM, &n, &pos), AG_EINVAL);
    assert_int_equal(pos, (size_t)(x - 3 - trunc));
}

/* ---- caps ---- */

static void test_caps(void **state)
{
    (void)state;
    ag_jscan_path_t p = compile("choices[*].index", 0);
    size_t n = 42;
    assert_int_equal(ag_jscan_find(ag_cstr(chat_n2), &p, 1, m, 2, &n, NULL), AG_ETOOBIG);
    assert_int_equal(n, 42);
    assert_int_equal(ag_jscan_find(ag_cstr(chat_n2), &p, 1, m, 3, &n, NULL), AG_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ag_jscan_find(ag_cstr(chat_n2), &p, 1, NULL, 0, &n, NULL), AG_ETOOBIG);
    ag_jscan_path_t many[AG_JSCAN_MAX_PATHS + 1];
    for (size_t i = 0; i <= AG_JSCAN_MAX_PATHS; i++)
        many[i] = p;
    assert_int_equal(ag_jscan_find(ag_cstr(chat_n2), many, AG_JSCAN_MAX_PATHS, m, MAXM, &n, NULL),
                     AG_OK);
    assert_int_equal(n, 3 * AG_JSCAN_MAX_PATHS);
    assert_int_equal(m[AG_JSCAN_MAX_PATHS - 1].path, AG_JSCAN_MAX_PATHS - 1);
    assert_int_equal(
        ag_jscan_find(ag_cstr(chat_n2), many, AG_JSCAN_MAX_PATHS + 1, m, MAXM, &n, NULL),
        AG_EINVAL);

    /* Map capacity: decoded length + 1 entries needed; len - 1 always enough. */
    static const char j[] = "\"ab\\u00e9\"";
    size_t ml = 0;
    ag_buf_reset(&buf);
    assert_int_equal(ag_jscan_decode(ag_cstr(j), 0, 10, &buf, map, 4, &ml), AG_ETOOBIG);
    assert_int_equal(buf.len, 0);
    assert_int_equal(ag_jscan_decode(ag_cstr(j), 0, 10, &buf, map, 5, &ml), AG_OK);
    assert_int_equal(ml, 5);
    ag_buf_reset(&buf);
    assert_int_equal(ag_jscan_decode(AG_STR_LIT("\"\""), 0, 2, &buf, map, 0, &ml), AG_ETOOBIG);
    assert_int_equal(ag_jscan_decode(AG_STR_LIT("\"\""), 0, 2, &buf, map, 1, &ml), AG_OK);
    assert_int_equal(ml, 1);
    assert_int_equal(map[0], 1);

    /* Output buffer limits. */
    ag_buf_t small;
    ag_buf_init(&small, 3);
    assert_int_equal(ag_jscan_decode(ag_cstr(j), 0, 10, &small, map, 64, &ml), AG_ETOOBIG);
    assert_int_equal(small.len, 0);
    assert_int_equal(find1(chat_n2, "model", 0), 1);
    ag_jscan_splice_t sp = {m[0].off, m[0].len, NULL, 0, NULL, 0, AG_STR_LIT("\"m\"")};
    assert_int_equal(ag_jscan_splice(ag_cstr(chat_n2), &sp, 1, &small), AG_ETOOBIG);
    assert_int_equal(small.len, 0);
    ag_buf_dispose(&small);
    ag_buf_init(&small, 4);
    assert_int_equal(ag_jscan_escape(&small, AG_STR_LIT("ab\n"), 0), AG_OK);
    assert_int_equal(ag_jscan_escape(&small, AG_STR_LIT("\n"), 0), AG_ETOOBIG);
    assert_int_equal(small.len, 4);
    ag_buf_dispose(&small);
}

/* A multi-megabyte body: long strings with escapes, found and spliced exactly. */
static void test_large_body(void **state)
{
    (void)state;
    ag_buf_t big;
    ag_buf_init(&big, 1 << 24);
    assert_int_equal(
        ag_buf_append(&big, "{\"choices\":[{\"index\":0,\"message\":{\"content\":\"", 45), AG_OK);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(ag_buf_appendf(&big, "line %d: \\\"x\\\" \xc3\xa9\\n", i), AG_OK);
    assert_int_equal(ag_buf_append(&big, "\"}}]}", 5), AG_OK);
    ag_jscan_path_t p = compile("choices[*].message.content", AG_JSCAN_STRING);
    size_t n = 0, ml = 0;
    assert_int_equal(ag_jscan_find(ag_buf_str(&big), &p, 1, m, MAXM, &n, NULL), AG_OK);
    assert_int_equal(n, 1);
    size_t *bigmap = malloc(sizeof(size_t) * m[0].len);
    assert_non_null(bigmap);
    ag_buf_reset(&buf);
    assert_int_equal(
        ag_jscan_decode(ag_buf_str(&big), m[0].off, m[0].len, &buf, bigmap, m[0].len - 1, &ml),
        AG_OK);
    ag_buf_reset(&buf2);
    assert_int_equal(ag_json_decode_str(ag_str(big.ptr + m[0].off + 1, m[0].len - 2), &buf2),
                     AG_OK);
    assert_int_equal(buf.len, buf2.len);
    assert_memory_equal(buf.ptr, buf2.ptr, buf.len);
    /* Replace "line 50000" → "LINE 50000". */
    const char *at = memmem(buf.ptr, buf.len, "line 50000:", 11);
    assert_non_null(at);
    size_t a = (size_t)(at - buf.ptr);
    ag_jscan_edit_t ed = {a, a + 4, AG_STR_LIT("LINE")};
    ag_jscan_splice_t sp = {m[0].off, m[0].len, bigmap, ml, &ed, 1, {NULL, 0}};
    ag_buf_reset(&buf2);
    assert_int_equal(ag_jscan_splice(ag_buf_str(&big), &sp, 1, &buf2), AG_OK);
    assert_int_equal(buf2.len, big.len);
    size_t ra = bigmap[a];
    assert_memory_equal(buf2.ptr, big.ptr, ra);
    assert_memory_equal(buf2.ptr + ra, "LINE", 4);
    assert_memory_equal(buf2.ptr + ra + 4, big.ptr + ra + 4, big.len - ra - 4);
    free(bigmap);
    ag_buf_dispose(&big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chat_nonstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chat_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_responses_nonstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_nonstream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filter_order_and_dups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filter_interleaved_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_compile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates_and_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_alignment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_keeps_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_styles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_splice_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_body, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
