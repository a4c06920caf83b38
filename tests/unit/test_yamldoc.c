/* Unit tests for yamldoc.c: positions, duplicate keys, aliases and their limits, errors,
 * multi-document streams, scalar styles and helpers. Leaks are caught by LSan at exit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>

#include "yamldoc.h"

static ag_ydocs_t docs;
static ag_diag_t diag;
static ag_buf_t text;

static int setup(void **state)
{
    (void)state;
    memset(&docs, 0, sizeof(docs));
    memset(&diag, 0, sizeof(diag));
    ag_buf_init(&text, 1 << 24);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ag_ydocs_dispose(&docs);
    ag_buf_dispose(&text);
    return 0;
}

static void load_ok(const char *yaml)
{
    int rc = ag_yaml_load(ag_cstr(yaml), "t.yaml", &docs, &diag);
    if (rc != AG_OK)
        fail_msg("unexpected error %u:%u: %s", diag.line, diag.col, diag.msg);
}

/* Loads yaml expecting an error at line:col whose message contains want; checks *out is
 * untouched. */
static void load_err(const char *yaml, unsigned line, unsigned col, const char *want)
{
    ag_ydocs_t out;
    memset(&out, 0xa5, sizeof(out));
    ag_ydocs_t before = out;
    assert_int_equal(ag_yaml_load(ag_cstr(yaml), "t.yaml", &out, &diag), AG_EINVAL);
    assert_memory_equal(&out, &before, sizeof(out));
    assert_string_equal(diag.file, "t.yaml");
    if (strstr(diag.msg, want) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", diag.msg, want);
    assert_int_equal(diag.line, line);
    assert_int_equal(diag.col, col);
}

static void assert_pos(const ag_ynode_t *n, unsigned line, unsigned col)
{
    assert_non_null(n);
    assert_int_equal(n->line, line);
    assert_int_equal(n->col, col);
}

static void assert_text(const ag_ynode_t *n, const char *want)
{
    assert_non_null(n);
    assert_int_equal(n->type, AG_Y_SCALAR);
    assert_int_equal(n->len, strlen(want));
    assert_string_equal(n->text, want);
}

static void test_positions_nested(void **state)
{
    (void)state;
    load_ok("id: no-var\n"
            "rule:\n"
            "  pattern: var $A = $B\n"
            "  any:\n"
            "    - kind: a\n"
            "    - {kind: \"b\", has: [x, 'y']}\n");
    assert_int_equal(docs.n, 1);
    const ag_ynode_t *root = docs.roots[0];
    assert_int_equal(root->type, AG_Y_MAP);
    assert_pos(root, 1, 1);
    assert_int_equal(root->n, 2);
    assert_pos(root->pairs[0].key, 1, 1);
    assert_text(root->pairs[0].value, "no-var");
    assert_pos(root->pairs[0].value, 1, 5);
    assert_pos(root->pairs[1].key, 2, 1);

    const ag_ynode_t *rule = ag_ymap_get(root, "rule");
    assert_int_equal(rule->type, AG_Y_MAP);
    assert_pos(rule, 3, 3);
    assert_pos(rule->pairs[1].key, 4, 3);
    const ag_ynode_t *pat = ag_ymap_get(rule, "pattern");
    assert_text(pat, "var $A = $B");
    assert_pos(pat, 3, 12);

    const ag_ynode_t *any = ag_ymap_get(rule, "any");
    assert_int_equal(any->type, AG_Y_SEQ);
    assert_int_equal(any->n, 2);
    assert_pos(any, 5, 5);
    assert_pos(any->items[0], 5, 7);
    assert_pos(ag_ymap_get(any->items[0], "kind"), 5, 13);
    const ag_ynode_t *flow = any->items[1];
    assert_int_equal(flow->type, AG_Y_MAP);
    assert_pos(flow, 6, 7);
    assert_pos(flow->pairs[0].key, 6, 8);
    assert_pos(ag_ymap_get(flow, "kind"), 6, 14);
    const ag_ynode_t *has = ag_ymap_get(flow, "has");
    assert_int_equal(has->type, AG_Y_SEQ);
    assert_pos(has, 6, 24);
    assert_pos(has->items[0], 6, 25);
    assert_pos(has->items[1], 6, 28);
    assert_text(has->items[1], "y");
    assert_false(has->items[1]->plain);
    assert_true(has->items[0]->plain);

    /* columns count characters, as libyaml does */
    ag_ydocs_dispose(&docs);
    load_ok("\xc3\xa9t\xc3\xa9: x\n");
    assert_pos(docs.roots[0]->pairs[0].value, 1, 6);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    load_err("id: a\n"
             "rule:\n"
             "  kind: x\n"
             "  pattern: y\n"
             "  kind: z\n",
             5, 3, "duplicate key `kind` (first at line 3)");
    /* quoting does not make a different key */
    load_err("{a: 1, 'a': 2}", 1, 8, "duplicate key `a` (first at line 1)");
    /* the same key in different mappings is fine */
    load_ok("a: {k: 1}\nb: {k: 2}\nk: 3\n");
    assert_int_equal(docs.roots[0]->n, 3);
    ag_ydocs_dispose(&docs);
    /* prefix of another key is not a duplicate */
    load_ok("ab: 1\na: 2\nabc: 3\n");
    ag_ydocs_dispose(&docs);
}

static void test_duplicate_keys_large_map(void **state)
{
    (void)state;
    for (int i = 0; i < 40; i++)
        assert_int_equal(ag_buf_appendf(&text, "k%d: %d\n", i, i), AG_OK);
    assert_int_equal(ag_yaml_load(ag_buf_str(&text), "t.yaml", &docs, &diag), AG_OK);
    assert_int_equal(docs.roots[0]->n, 40);
    assert_text(ag_ymap_get(docs.roots[0], "k39"), "39");
    ag_ydocs_dispose(&docs);

    assert_int_equal(ag_buf_append(&text, "k7: again\n", 10), AG_OK);
    ag_ydocs_t out = {0};
    assert_int_equal(ag_yaml_load(ag_buf_str(&text), "t.yaml", &out, &diag), AG_EINVAL);
    assert_string_equal(diag.msg, "duplicate key `k7` (first at line 8)");
    assert_int_equal(diag.line, 41);
    assert_int_equal(diag.col, 1);

    /* keys after the first LINEAR_KEYS are indexed too: duplicate one of them */
    text.len -= 10;
    assert_int_equal(ag_buf_append(&text, "k30: again\n", 11), AG_OK);
    assert_int_equal(ag_yaml_load(ag_buf_str(&text), "t.yaml", &out, &diag), AG_EINVAL);
    assert_string_equal(diag.msg, "duplicate key `k30` (first at line 31)");
    assert_int_equal(diag.line, 41);
}

static void test_aliases(void **state)
{
    (void)state;
    load_ok("base: &b\n"
            "  kind: call_expression\n"
            "  has: &h [x]\n"
            "name: &n model\n"
            "one: *b\n"
            "two: [*h, *n]\n"
            "*n : key-from-alias\n");
    const ag_ynode_t *root = docs.roots[0];
    const ag_ynode_t *base = ag_ymap_get(root, "base");
    const ag_ynode_t *one = ag_ymap_get(root, "one");
    assert_ptr_equal(one, base);
    assert_text(ag_ymap_get(one, "kind"), "call_expression");
    const ag_ynode_t *two = ag_ymap_get(root, "two");
    assert_ptr_equal(two->items[0], ag_ymap_get(base, "has"));
    assert_text(two->items[1], "model");
    /* an alias used as a key duplicates nothing here; it resolves to its text */
    assert_text(ag_ymap_get(root, "model"), "key-from-alias");
    assert_int_equal(root->n, 5);
    ag_ydocs_dispose(&docs);

    /* a later anchor with the same name wins */
    load_ok("a: &x 1\nb: &x 2\nc: *x\n");
    assert_text(ag_ymap_get(docs.roots[0], "c"), "2");
    ag_ydocs_dispose(&docs);

    /* an alias key that duplicates an earlier key is reported at the alias */
    load_err("k: &a v\nv: 1\n*a : 2\n", 3, 1, "duplicate key `v` (first at line 2)");
    load_err("a: 1\nb: *nope\n", 2, 4, "unknown alias `*nope`");
    /* anchors do not cross documents */
    load_err("a: &x 1\n---\nb: *x\n", 3, 4, "unknown alias `*x`");
    /* a node cannot contain itself */
    load_err("a: &r [1, *r]\n", 1, 11, "refers to a node that contains it");
    /* an alias to a collection is not a valid key */
    load_err("a: &m {x: 1}\n*m : 2\n", 2, 1, "a mapping key must be a string, not a mapping");
}

static void test_alias_bomb(void **state)
{
    (void)state;
    /* "billion laughs": 10^6 nodes after expansion from a few hundred bytes */
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    /* root map 1, then key + value for a..d: 12 + 112 + 1112 + 11112 = 12349 nodes; key e and
     * its sequence make 12351; each *d adds 11111, so after 7 of them the 8th (column 36)
     * would reach 12351 + 8 * 11111 = 101239 > 100000 */
    load_err(bomb, 5, 36, "too many YAML nodes");

    /* the same shape one level smaller is within budget and fully usable */
    load_ok("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
            "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n");
    const ag_ynode_t *d = ag_ymap_get(docs.roots[0], "d");
    assert_int_equal(d->n, 10);
    assert_text(d->items[9]->items[9]->items[9]->items[9], "x");
}

static void test_plain_node_budget(void **state)
{
    (void)state;
    assert_int_equal(ag_buf_append(&text, "[", 1), AG_OK);
    for (int i = 0; i < AG_YAML_MAX_NODES; i++)
        assert_int_equal(ag_buf_append(&text, "1,", 2), AG_OK);
    assert_int_equal(ag_buf_append(&text, "1]", 2), AG_OK);
    /* the sequence itself is one node, so the 100000th item is one too many */
    assert_int_equal(ag_yaml_load(ag_buf_str(&text), "t.yaml", &docs, &diag), AG_EINVAL);
    assert_non_null(strstr(diag.msg, "too many YAML nodes"));
    assert_int_equal(diag.line, 1);
    assert_int_equal(diag.col, 2 + 2 * (AG_YAML_MAX_NODES - 1));
}

static void test_depth_limit(void **state)
{
    (void)state;
    char deep[2 * AG_YAML_MAX_DEPTH + 8];
    for (int i = 0; i < AG_YAML_MAX_DEPTH; i++)
        deep[i] = '[', deep[2 * AG_YAML_MAX_DEPTH - 1 - i] = ']';
    deep[2 * AG_YAML_MAX_DEPTH] = '\0';
    load_ok(deep);
    const ag_ynode_t *n = docs.roots[0];
    for (int i = 1; i < AG_YAML_MAX_DEPTH; i++) {
        assert_int_equal(n->type, AG_Y_SEQ);
        assert_int_equal(n->n, 1);
        n = n->items[0];
    }
    assert_int_equal(n->n, 0);
    ag_ydocs_dispose(&docs);

    char deeper[sizeof(deep) + 2];
    snprintf(deeper, sizeof(deeper), "[%s]", deep);
    load_err(deeper, 1, AG_YAML_MAX_DEPTH + 1, "nesting deeper than 64");

    /* depth counts through aliases: a 40-deep anchor used 30 levels down is too deep */
    ag_buf_t y;
    ag_buf_init(&y, 1 << 16);
    assert_int_equal(ag_buf_append(&y, "a: &d ", 6), AG_OK);
    for (int i = 0; i < 40; i++)
        assert_int_equal(ag_buf_appendc(&y, '['), AG_OK);
    for (int i = 0; i < 40; i++)
        assert_int_equal(ag_buf_appendc(&y, ']'), AG_OK);
    assert_int_equal(ag_buf_append(&y, "\nb: ", 4), AG_OK);
    for (int i = 0; i < 23; i++)
        assert_int_equal(ag_buf_appendc(&y, '['), AG_OK);
    assert_int_equal(ag_buf_append(&y, "*d", 2), AG_OK);
    for (int i = 0; i < 23; i++)
        assert_int_equal(ag_buf_appendc(&y, ']'), AG_OK);
    /* root map + 23 + 40 = 64: fine */
    assert_int_equal(ag_yaml_load(ag_buf_str(&y), "t.yaml", &docs, &diag), AG_OK);
    ag_ydocs_dispose(&docs);
    /* one more level: too deep, reported at the alias */
    ag_buf_reset(&y);
    assert_int_equal(ag_buf_append(&y, "a: &d [[[]]]\nb: ", 16), AG_OK);
    for (int i = 0; i < 61; i++)
        assert_int_equal(ag_buf_appendc(&y, '['), AG_OK);
    assert_int_equal(ag_buf_append(&y, "*d", 2), AG_OK);
    for (int i = 0; i < 61; i++)
        assert_int_equal(ag_buf_appendc(&y, ']'), AG_OK);
    assert_int_equal(ag_yaml_load(ag_buf_str(&y), "t.yaml", &docs, &diag), AG_EINVAL);
    assert_non_null(strstr(diag.msg, "nesting deeper than 64"));
    assert_int_equal(diag.line, 2);
    assert_int_equal(diag.col, 4 + 61);
    ag_buf_dispose(&y);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    load_err("a: 1\n b: 2\n", 2, 3, "mapping values are not allowed in this context");
    load_err("id: x\nrule:\n  kind: a\n bad\n", 4, 2, "did not find expected key");
    load_err("a: [1, 2\n", 2, 1, "did not find expected ',' or ']'");
    assert_string_equal(diag.msg, "did not find expected ',' or ']' (while parsing a flow sequence "
                                  "at line 1 column 4)");
    load_err("a: \"unterminated\n", 2, 1, "found unexpected end of stream");
    load_err("a: *\n", 1, 5, "did not find expected alphabetic or numeric character");
    /* reader errors carry a byte offset, which is turned into line and column */
    load_err("a: 1\nb: x\xff\n", 2, 5, "invalid leading UTF-8 octet");
    /* an error after anchors and large open mappings must not leak (LSan checks) */
    ag_buf_t y;
    ag_buf_init(&y, 1 << 16);
    assert_int_equal(ag_buf_append(&y, "x: &a [1]\nm:\n", 13), AG_OK);
    for (int i = 0; i < 20; i++)
        assert_int_equal(ag_buf_appendf(&y, "  k%d: {a: *a}\n", i), AG_OK);
    assert_int_equal(ag_buf_append(&y, "  q: [1, {z: ]\n", 15), AG_OK);
    ag_ydocs_t out = {0};
    assert_int_equal(ag_yaml_load(ag_buf_str(&y), "t.yaml", &out, &diag), AG_EINVAL);
    assert_int_equal(diag.line, 23);
    assert_null(out.roots);
    ag_buf_dispose(&y);
}

static void test_multi_document(void **state)
{
    (void)state;
    load_ok("id: one\n---\nid: two\n---\n");
    assert_int_equal(docs.n, 2);
    assert_text(ag_ymap_get(docs.roots[0], "id"), "one");
    assert_text(ag_ymap_get(docs.roots[1], "id"), "two");
    assert_pos(docs.roots[1], 3, 1);
    ag_ydocs_dispose(&docs);

    load_ok("---\n# only a comment\n---\n---\nid: three\n...\n---\n");
    assert_int_equal(docs.n, 1);
    assert_text(ag_ymap_get(docs.roots[0], "id"), "three");
    assert_pos(docs.roots[0], 5, 1);
    ag_ydocs_dispose(&docs);

    load_ok("");
    assert_int_equal(docs.n, 0);
    ag_ydocs_dispose(&docs);

    /* an explicit empty string or null is a document, not an empty one */
    load_ok("--- ''\n--- ~\n--- plain\n");
    assert_int_equal(docs.n, 3);
    assert_text(docs.roots[0], "");
    assert_false(docs.roots[0]->plain);
    assert_true(ag_yscalar_is_null(docs.roots[1]));
    assert_text(docs.roots[2], "plain");
}

static void test_block_scalars(void **state)
{
    (void)state;
    load_ok("fix: |\n"
            "  if (a) {\n"
            "    b();\n"
            "  }\n"
            "strip: |-\n"
            "  x\n"
            "\n"
            "folded: >\n"
            "  one\n"
            "  two\n"
            "after: 1\n");
    const ag_ynode_t *root = docs.roots[0];
    const ag_ynode_t *fix = ag_ymap_get(root, "fix");
    assert_text(fix, "if (a) {\n  b();\n}\n");
    assert_false(fix->plain);
    assert_pos(fix, 1, 6);
    assert_text(ag_ymap_get(root, "strip"), "x");
    assert_text(ag_ymap_get(root, "folded"), "one two\n");
    assert_pos(root->pairs[3].key, 11, 1);
}

static void test_scalar_bytes_and_tags(void **state)
{
    (void)state;
    load_ok("a: \"x\\0y\\u00e9\"\nb: !!str 12\nc: !custom v\n");
    const ag_ynode_t *a = ag_ymap_get(docs.roots[0], "a");
    assert_int_equal(a->len, 5);
    assert_memory_equal(a->text, "x\0y\xc3\xa9", 6);
    const ag_ynode_t *b = ag_ymap_get(docs.roots[0], "b");
    assert_text(b, "12");
    assert_false(b->plain);
    assert_string_equal(b->tag, "tag:yaml.org,2002:str");
    long v = 7;
    assert_int_equal(ag_yscalar_int(b, &v), AG_EINVAL);
    assert_int_equal(v, 7);
    assert_string_equal(ag_ymap_get(docs.roots[0], "c")->tag, "!custom");
    assert_null(ag_ymap_get(docs.roots[0], "a")->tag);
    /* keys with NUL are compared by length */
    assert_null(ag_ymap_getn(docs.roots[0], AG_STR_LIT("a\0")));
    assert_ptr_equal(ag_ymap_getn(docs.roots[0], AG_STR_LIT("a")), a);
    ag_str_t s = ag_yscalar_str(a);
    assert_int_equal(s.len, 5);
}

static void test_non_scalar_keys(void **state)
{
    (void)state;
    load_err("? [a, b]\n: 1\n", 1, 3, "a mapping key must be a string, not a sequence");
    load_err("x: 1\n? {a: 1}\n: 2\n", 2, 3, "a mapping key must be a string, not a mapping");
    load_err("{[a]: 1}", 1, 2, "a mapping key must be a string, not a sequence");
    /* reported as soon as the key starts, before anything inside it */
    load_err("? [a, {b: 1, b: 2}]\n: 1\n", 1, 3, "a mapping key must be a string, not a sequence");
    /* a collection as value after a complex-looking key is fine */
    load_ok("? a\n: [1]\n");
    assert_int_equal(ag_ymap_get(docs.roots[0], "a")->type, AG_Y_SEQ);
}

static void test_scalar_helpers(void **state)
{
    (void)state;
    load_ok("n1: null\nn2: ~\nn3:\nn4: NULL\ns1: \"null\"\ns2: 'null'\ns3: nil\n"
            "t: true\nf: False\nbq: \"true\"\nby: yes\n"
            "i1: 42\ni2: -17\ni3: +5\ni4: 0x1F\ni5: 0o17\ni6: 9223372036854775807\n"
            "i7: -9223372036854775808\ni8: 9223372036854775808\ni9: 1.5\ni10: 0x\ni11: '3'\n"
            "i12: +\ni13: 12a\nm: {}\n");
    const ag_ynode_t *r = docs.roots[0];
    assert_true(ag_yscalar_is_null(ag_ymap_get(r, "n1")));
    assert_true(ag_yscalar_is_null(ag_ymap_get(r, "n2")));
    assert_true(ag_yscalar_is_null(ag_ymap_get(r, "n3")));
    assert_true(ag_yscalar_is_null(ag_ymap_get(r, "n4")));
    assert_false(ag_yscalar_is_null(ag_ymap_get(r, "s1")));
    assert_false(ag_yscalar_is_null(ag_ymap_get(r, "s2")));
    assert_false(ag_yscalar_is_null(ag_ymap_get(r, "s3")));
    assert_false(ag_yscalar_is_null(ag_ymap_get(r, "m")));
    assert_false(ag_yscalar_is_null(NULL));

    bool bv = false;
    assert_int_equal(ag_yscalar_bool(ag_ymap_get(r, "t"), &bv), AG_OK);
    assert_true(bv);
    assert_int_equal(ag_yscalar_bool(ag_ymap_get(r, "f"), &bv), AG_OK);
    assert_false(bv);
    assert_int_equal(ag_yscalar_bool(ag_ymap_get(r, "bq"), &bv), AG_EINVAL);
    assert_int_equal(ag_yscalar_bool(ag_ymap_get(r, "by"), &bv), AG_EINVAL);
    assert_int_equal(ag_yscalar_bool(ag_ymap_get(r, "m"), &bv), AG_EINVAL);

    long v = 0;
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i1"), &v), AG_OK);
    assert_int_equal(v, 42);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i2"), &v), AG_OK);
    assert_int_equal(v, -17);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i3"), &v), AG_OK);
    assert_int_equal(v, 5);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i4"), &v), AG_OK);
    assert_int_equal(v, 31);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i5"), &v), AG_OK);
    assert_int_equal(v, 15);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i6"), &v), AG_OK);
    assert_true(v == LONG_MAX);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i7"), &v), AG_OK);
    assert_true(v == LONG_MIN);
    v = 3;
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i8"), &v), AG_ETOOBIG);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i9"), &v), AG_EINVAL);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i10"), &v), AG_EINVAL);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i11"), &v), AG_EINVAL);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i12"), &v), AG_EINVAL);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "i13"), &v), AG_EINVAL);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "n3"), &v), AG_EINVAL);
    assert_int_equal(ag_yscalar_int(ag_ymap_get(r, "m"), &v), AG_EINVAL);
    assert_int_equal(v, 3);

    assert_null(ag_ymap_get(r, "absent"));
    assert_null(ag_ymap_get(ag_ymap_get(r, "i1"), "x"));
    assert_null(ag_ymap_get(NULL, "x"));
    assert_string_equal(ag_ytype_name(AG_Y_SCALAR), "a string");
    assert_string_equal(ag_ytype_name(AG_Y_MAP), "a mapping");
    assert_string_equal(ag_ytype_name(AG_Y_SEQ), "a sequence");
}

static void test_dispose_zeroed(void **state)
{
    (void)state;
    ag_ydocs_t z = {0};
    ag_ydocs_dispose(&z);
    ag_ydocs_dispose(NULL);
    load_ok("a: 1\n");
    ag_ydocs_dispose(&docs);
    assert_null(docs.roots);
    assert_int_equal(docs.n, 0);
    ag_ydocs_dispose(&docs);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_positions_nested),
        T(test_duplicate_keys),
        T(test_duplicate_keys_large_map),
        T(test_aliases),
        T(test_alias_bomb),
        T(test_plain_node_budget),
        T(test_depth_limit),
        T(test_syntax_errors),
        T(test_multi_document),
        T(test_block_scalars),
        T(test_scalar_bytes_and_tags),
        T(test_non_scalar_keys),
        T(test_scalar_helpers),
        T(test_dispose_zeroed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
