/* metadata.astgate.ensure: "the value at this place equals V". Values are followed, inside the
 * block, through what the code lets us see: a `const` in scope (never one in another function or
 * block), parentheses and type assertions, arrow and function bodies (their returned values), calls
 * of local functions, both branches of a ternary, and object spreads (the last definition wins).
 * Edits touch only the value (or insert one property), never the whole object. */
#include "rewrite_int.h"

#define MAX_LEAVES 16
#define MAX_FOLLOW 16

typedef struct kinds {
    TSSymbol object, pair, shorthand, spread, property_identifier, string, string_fragment,
        escape_sequence, template_string, template_substitution, call, arguments, identifier,
        arrow, function_expression, function_declaration, statement_block, return_statement,
        ternary, parens, as_expr, satisfies_expr, non_null, await_expr, lexical_declaration,
        variable_declarator, export_statement, program, array, comment, method_definition,
        number, formal_parameters, class_body, class_declaration, switch_case;
    TSFieldId f_key, f_value, f_function, f_arguments, f_body, f_name, f_parameters, f_parameter,
        f_consequence, f_alternative, f_declaration, f_kind;
} kinds_t;

typedef struct ens {
    ag_engine_t *e;
    const ag_flat_t *f;
    const kinds_t *k;
    uint32_t rule;
    ag_lang_t lang;
    const ag_rule_def_t *def;
    ag_env_t env;
    int depth;
    uint32_t guard; /* the values being pinned end here: all of it must be in the reply */
    uint32_t match; /* the node the rule matched */
} ens_t;


static TSSymbol K(ag_lang_t l, const char *n)
{
    return ag_lang_kind(l, ag_cstr(n));
}

static TSFieldId F(ag_lang_t l, const char *n)
{
    return ag_lang_field(l, ag_cstr(n));
}

struct kinds *ag_ensure_kinds_new(void)
{
    kinds_t *all = ag_xcalloc(AG_LANG_COUNT, sizeof(*all));
    for (int li = 0; li < AG_LANG_COUNT; li++) {
        ag_lang_t l = (ag_lang_t)li;
        kinds_t *k = &all[li];
        k->object = K(l, "object");
        k->pair = K(l, "pair");
        k->shorthand = K(l, "shorthand_property_identifier");
        k->spread = K(l, "spread_element");
        k->property_identifier = K(l, "property_identifier");
        k->string = K(l, "string");
        k->string_fragment = K(l, "string_fragment");
        k->escape_sequence = K(l, "escape_sequence");
        k->template_string = K(l, "template_string");
        k->template_substitution = K(l, "template_substitution");
        k->call = K(l, "call_expression");
        k->arguments = K(l, "arguments");
        k->identifier = K(l, "identifier");
        k->arrow = K(l, "arrow_function");
        k->function_expression = K(l, "function_expression");
        k->function_declaration = K(l, "function_declaration");
        k->statement_block = K(l, "statement_block");
        k->return_statement = K(l, "return_statement");
        k->ternary = K(l, "ternary_expression");
        k->parens = K(l, "parenthesized_expression");
        k->as_expr = K(l, "as_expression");
        k->satisfies_expr = K(l, "satisfies_expression");
        k->non_null = K(l, "non_null_expression");
        k->await_expr = K(l, "await_expression");
        k->lexical_declaration = K(l, "lexical_declaration");
        k->variable_declarator = K(l, "variable_declarator");
        k->export_statement = K(l, "export_statement");
        k->program = K(l, "program");
        k->array = K(l, "array");
        k->comment = K(l, "comment");
        k->method_definition = K(l, "method_definition");
        k->number = K(l, "number");
        k->formal_parameters = K(l, "formal_parameters");
        k->class_body = K(l, "class_body");
        k->class_declaration = K(l, "class_declaration");
        k->switch_case = K(l, "switch_case");
        k->f_key = F(l, "key");
        k->f_value = F(l, "value");
        k->f_function = F(l, "function");
        k->f_arguments = F(l, "arguments");
        k->f_body = F(l, "body");
        k->f_name = F(l, "name");
        k->f_parameters = F(l, "parameters");
        k->f_parameter = F(l, "parameter");
        k->f_consequence = F(l, "consequence");
        k->f_alternative = F(l, "alternative");
        k->f_declaration = F(l, "declaration");
        k->f_kind = F(l, "kind");
    }
    return all;
}

static const ag_fnode_t *N(const ens_t *s, uint32_t i)
{
    return &s->f->nodes[i];
}

static ag_str_t T(const ens_t *s, uint32_t i)
{
    return ag_flat_text(s->f, i);
}

static bool is(const ens_t *s, uint32_t i, TSSymbol sym)
{
    return i != AG_NONE && sym != 0 && N(s, i)->sym == sym;
}

static uint32_t field(const ens_t *s, uint32_t i, TSFieldId f)
{
    return f ? ag_flat_child_by_field(s->f, i, f) : AG_NONE;
}

/* first named child that is not a comment */
static uint32_t first_named(const ens_t *s, uint32_t i)
{
    for (uint32_t c = N(s, i)->first_child; c != AG_NONE; c = N(s, c)->next_sib)
        if (N(s, c)->named && !N(s, c)->extra)
            return c;
    return AG_NONE;
}

/* last named child that is not a comment */
static uint32_t last_named(const ens_t *s, uint32_t i)
{
    uint32_t last = AG_NONE;
    for (uint32_t c = N(s, i)->first_child; c != AG_NONE; c = N(s, c)->next_sib)
        if (N(s, c)->named && !N(s, c)->extra)
            last = c;
    return last;
}

static bool is_function(const ens_t *s, uint32_t i)
{
    return is(s, i, s->k->arrow) || is(s, i, s->k->function_expression) ||
           is(s, i, s->k->function_declaration) || is(s, i, s->k->method_definition);
}

/* ---- bindings: the `const` a name refers to at a use site ---- */

static bool declares_param(const ens_t *s, uint32_t fn, ag_str_t name)
{
    uint32_t p = field(s, fn, s->k->f_parameters);
    if (p == AG_NONE)
        p = field(s, fn, s->k->f_parameter);
    if (p == AG_NONE)
        return false;
    for (uint32_t i = p; i < N(s, p)->subtree_end; i++)
        if (N(s, i)->child_count == 0 && N(s, i)->named && ag_str_eq(T(s, i), name))
            return true;
    return false;
}

/* A declaration statement directly in scope that binds name: the declarator's value or the
 * function itself. *found tells whether the name was bound at all (it may be bound to nothing we
 * can follow, e.g. `let`). */
static uint32_t declared_in(const ens_t *s, uint32_t scope, ag_str_t name, bool *found)
{
    for (uint32_t st = N(s, scope)->first_child; st != AG_NONE; st = N(s, st)->next_sib) {
        uint32_t d = st;
        if (is(s, d, s->k->export_statement)) {
            uint32_t inner = field(s, d, s->k->f_declaration);
            if (inner == AG_NONE)
                continue;
            d = inner;
        }
        if (is(s, d, s->k->function_declaration)) {
            uint32_t nm = field(s, d, s->k->f_name);
            if (nm != AG_NONE && ag_str_eq(T(s, nm), name)) {
                *found = true;
                return N(s, d)->has_error ? AG_NONE : d;
            }
            continue;
        }
        if (!is(s, d, s->k->lexical_declaration))
            continue;
        bool broken = N(s, d)->has_error; /* a declaration the parser repaired */
        uint32_t kind = field(s, d, s->k->f_kind);
        bool is_const = kind != AG_NONE && ag_str_eqc(T(s, kind), "const");
        for (uint32_t v = N(s, d)->first_child; v != AG_NONE; v = N(s, v)->next_sib) {
            if (!is(s, v, s->k->variable_declarator))
                continue;
            uint32_t nm = field(s, v, s->k->f_name);
            if (nm == AG_NONE || !is(s, nm, s->k->identifier) || !ag_str_eq(T(s, nm), name))
                continue;
            *found = true;
            return is_const && !broken ? field(s, v, s->k->f_value) : AG_NONE;
        }
    }
    return AG_NONE;
}

static uint32_t resolve_name(const ens_t *s, uint32_t use, ag_str_t name)
{
    for (uint32_t a = N(s, use)->parent; a != AG_NONE; a = N(s, a)->parent) {
        if (is(s, a, s->k->program) || is(s, a, s->k->statement_block) ||
            is(s, a, s->k->switch_case) || is(s, a, s->k->class_body)) {
            bool found = false;
            uint32_t v = declared_in(s, a, name, &found);
            if (found)
                return v;
        }
        if (is_function(s, a) && declares_param(s, a, name))
            return AG_NONE;
    }
    return AG_NONE;
}

/* ---- following a value ---- */

typedef struct leaves {
    uint32_t n;
    uint32_t v[MAX_LEAVES];
} leaves_t;

static void add_leaf(leaves_t *l, uint32_t v)
{
    for (uint32_t i = 0; i < l->n; i++)
        if (l->v[i] == v)
            return;
    if (l->n < MAX_LEAVES)
        l->v[l->n++] = v;
}

static void follow(const ens_t *s, uint32_t v, leaves_t *out, int depth);

static void follow_returns(const ens_t *s, uint32_t fn, leaves_t *out, int depth)
{
    uint32_t body = field(s, fn, s->k->f_body);
    if (body == AG_NONE)
        return;
    if (!is(s, body, s->k->statement_block)) {
        follow(s, body, out, depth + 1);
        return;
    }
    for (uint32_t i = body + 1; i < N(s, body)->subtree_end;) {
        if (is_function(s, i) || is(s, i, s->k->class_declaration)) {
            i = N(s, i)->subtree_end;
            continue;
        }
        if (is(s, i, s->k->return_statement)) {
            uint32_t x = first_named(s, i);
            if (x != AG_NONE)
                follow(s, x, out, depth + 1);
        }
        i++;
    }
}

static void follow(const ens_t *s, uint32_t v, leaves_t *out, int depth)
{
    const kinds_t *k = s->k;
    if (v == AG_NONE)
        return;
    if (depth > MAX_FOLLOW) {
        add_leaf(out, v);
        return;
    }
    TSSymbol sym = N(s, v)->sym;
    if (sym == k->parens || sym == k->as_expr || sym == k->satisfies_expr ||
        sym == k->non_null || sym == k->await_expr) {
        uint32_t x = first_named(s, v);
        if (x != AG_NONE) {
            follow(s, x, out, depth + 1);
            return;
        }
    } else if (sym == k->identifier || sym == k->shorthand) {
        uint32_t d = resolve_name(s, v, T(s, v));
        if (d != AG_NONE) {
            if (is(s, d, k->function_declaration))
                add_leaf(out, d);
            else
                follow(s, d, out, depth + 1);
            return;
        }
    } else if (sym == k->arrow || sym == k->function_expression) {
        follow_returns(s, v, out, depth);
        return;
    } else if (sym == k->ternary) {
        follow(s, field(s, v, k->f_consequence), out, depth + 1);
        follow(s, field(s, v, k->f_alternative), out, depth + 1);
        return;
    } else if (sym == k->call) {
        uint32_t fn = field(s, v, k->f_function);
        if (is(s, fn, k->identifier)) {
            uint32_t d = resolve_name(s, fn, T(s, fn));
            if (d != AG_NONE && (is(s, d, k->arrow) || is(s, d, k->function_expression) ||
                                 is(s, d, k->function_declaration))) {
                follow_returns(s, d, out, depth);
                return;
            }
        }
    }
    add_leaf(out, v);
}

/* ---- objects ---- */

typedef enum { LK_MISSING, LK_FOUND } lk_state_t;

typedef struct lookup {
    lk_state_t state;
    uint32_t value;  /* FOUND: the value node (or the shorthand identifier) */
    uint32_t object; /* the object to insert into when MISSING */
} lookup_t;

static bool key_is(const ens_t *s, uint32_t key, ag_str_t name)
{
    const ag_fnode_t *n = N(s, key);
    ag_str_t t = T(s, key);
    if (n->sym == s->k->string) {
        if (t.len < 2)
            return false;
        return ag_str_eq(ag_str(t.ptr + 1, t.len - 2), name);
    }
    return (n->sym == s->k->property_identifier || n->sym == s->k->number) && ag_str_eq(t, name);
}

static void lookup(const ens_t *s, uint32_t obj, ag_str_t key, lookup_t *r, int depth)
{
    r->state = LK_MISSING;
    r->object = obj;
    r->value = AG_NONE;
    for (uint32_t c = N(s, obj)->first_child; c != AG_NONE; c = N(s, c)->next_sib) {
        const ag_fnode_t *n = N(s, c);
        if (n->sym == s->k->pair) {
            /* pair: key ':' value; the first and last named children (comments aside) */
            uint32_t kn = first_named(s, c);
            if (kn != AG_NONE && key_is(s, kn, key)) {
                r->state = LK_FOUND;
                r->value = last_named(s, c);
                if (r->value == kn)
                    r->value = AG_NONE;
            }
        } else if (n->sym == s->k->shorthand) {
            if (ag_str_eq(T(s, c), key)) {
                r->state = LK_FOUND;
                r->value = c;
            }
        } else if (n->sym == s->k->spread) {
            leaves_t l = {0};
            follow(s, first_named(s, c), &l, depth + 1);
            if (l.n == 1 && is(s, l.v[0], s->k->object) && depth < MAX_FOLLOW) {
                lookup_t sub;
                lookup(s, l.v[0], key, &sub, depth + 1);
                if (sub.state == LK_FOUND) {
                    r->state = LK_FOUND;
                    r->value = sub.value;
                }
            } else {
                /* an unknown spread may define the key: what came before no longer counts */
                r->state = LK_MISSING;
                r->value = AG_NONE;
            }
        }
    }
}

/* ---- pinning values ---- */

/* Quote character of the first string literal in [from, to), or 0. */
static char first_quote(const ens_t *s, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to && i < s->f->count; i++)
        if (N(s, i)->sym == s->k->string && N(s, i)->end > N(s, i)->start)
            return s->f->src[N(s, i)->start];
    return 0;
}

static char pick_quote(const ens_t *s, const ag_ensure_case_t *ec, uint32_t leaf, uint32_t obj)
{
    if (ec->quote == AG_QUOTE_SINGLE)
        return '\'';
    if (ec->quote == AG_QUOTE_DOUBLE)
        return '"';
    if (leaf != AG_NONE && (is(s, leaf, s->k->string) || is(s, leaf, s->k->template_string)))
        return s->f->src[N(s, leaf)->start];
    if (obj == AG_NONE && leaf != AG_NONE)
        obj = N(s, leaf)->parent;
    char q = 0;
    if (obj != AG_NONE)
        q = first_quote(s, obj, N(s, obj)->subtree_end);
    if (q == 0)
        q = first_quote(s, 0, s->f->count);
    return q ? q : '\'';
}

static int quoted(ag_buf_t *b, char q, ag_str_t v)
{
    int rc = ag_buf_appendc(b, q);
    for (size_t i = 0; i < v.len && rc == AG_OK; i++) {
        char ch = v.ptr[i];
        if (ch == '\\' || ch == q || (q == '`' && ch == '$' && i + 1 < v.len && v.ptr[i + 1] == '{'))
            rc = ag_buf_appendc(b, '\\');
        if (rc == AG_OK && ch == '\n')
            rc = ag_buf_append(b, "\\n", 2);
        else if (rc == AG_OK && ch == '\r')
            rc = ag_buf_append(b, "\\r", 2);
        else if (rc == AG_OK)
            rc = ag_buf_appendc(b, ch);
    }
    if (rc == AG_OK)
        rc = ag_buf_appendc(b, q);
    return rc;
}

/* Content of a plain literal ('x', "x", `x` without substitutions or escapes). */
static bool literal_content(const ens_t *s, uint32_t leaf, ag_str_t *out)
{
    if (!is(s, leaf, s->k->string) && !is(s, leaf, s->k->template_string))
        return false;
    for (uint32_t i = leaf + 1; i < N(s, leaf)->subtree_end; i++)
        if (N(s, i)->sym == s->k->escape_sequence || N(s, i)->sym == s->k->template_substitution)
            return false;
    ag_str_t t = T(s, leaf);
    if (t.len < 2 || t.ptr[t.len - 1] != t.ptr[0])
        return false;
    *out = ag_str(t.ptr + 1, t.len - 2);
    return true;
}

static bool inside_error(const ens_t *s, uint32_t i)
{
    for (uint32_t a = i; a != AG_NONE; a = N(s, a)->parent)
        if (N(s, a)->error)
            return true;
    return false;
}

static void pin(ens_t *s, const ag_ensure_case_t *ec, uint32_t leaf)
{
    ag_str_t want = ag_str(ec->value, ec->value_len);
    ag_buf_t b;
    ag_buf_init(&b, 1u << 20);
    const ag_fnode_t *n = N(s, leaf);
    int rc = AG_OK;
    /* what the parser could not place is not a value we can trust to pin, and a value that holds
     * the match itself (`const m = f(new Agent({ model: m }))`) is not its value */
    const ag_fnode_t *mn = N(s, s->match);
    if (n->has_error || inside_error(s, leaf) || (n->start <= mn->start && mn->end <= n->end))
        goto out;
    if (ec->has_code) {
        if (ag_str_eq(T(s, leaf), want))
            goto out;
        if (n->sym == s->k->shorthand) {
            rc = ag_buf_append(&b, T(s, leaf).ptr, T(s, leaf).len);
            if (rc == AG_OK)
                rc = ag_buf_append(&b, ": ", 2);
        }
        if (rc == AG_OK)
            rc = ag_buf_append(&b, want.ptr, want.len);
    } else {
        ag_str_t have;
        if (literal_content(s, leaf, &have) && ag_str_eq(have, want))
            goto out;
        char q = pick_quote(s, ec, leaf, AG_NONE);
        if (is(s, leaf, s->k->string) || is(s, leaf, s->k->template_string)) {
            /* a value that needs escapes is equal when it is spelled as we would spell it */
            rc = quoted(&b, s->f->src[n->start], want);
            if (rc == AG_OK && ag_str_eq(ag_buf_str(&b), T(s, leaf)))
                goto out;
            ag_buf_reset(&b);
        }
        if (n->sym == s->k->shorthand) {
            rc = ag_buf_append(&b, T(s, leaf).ptr, T(s, leaf).len);
            if (rc == AG_OK)
                rc = ag_buf_append(&b, ": ", 2);
        }
        if (rc == AG_OK)
            rc = quoted(&b, q, want);
    }
    if (rc == AG_OK)
        rc = ag_engine_edit(s->e, s->rule, n->start, n->end, ag_buf_str(&b),
                            n->end > s->guard ? n->end : s->guard);
    /* a whole string or template literal replaced by a literal quoted (and escaped) for the same
     * quote character cannot change how the rest parses */
    if (rc == AG_OK && ec->has_string && !n->has_error && !n->missing &&
        (n->sym == s->k->string || n->sym == s->k->template_string) &&
        b.len && b.ptr[0] == s->f->src[n->start])
        ag_engine_edit_is_safe(s->e);
out:
    ag_buf_dispose(&b);
}

/* Inserts `key: value` as the last property of obj (see shared/reference/rules.md §6.3). */
/* Whether `key: 'value'` inserted into a well-formed object can be trusted to parse: the key is
 * an identifier and the value a literal quoted by quoted(). */
static bool insert_is_safe(const ag_ensure_case_t *ec)
{
    if (!ec->has_string || ec->key_len == 0)
        return false;
    for (uint32_t i = 0; i < ec->key_len; i++) {
        char ch = ec->key[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || ch == '$' ||
                  (i > 0 && ch >= '0' && ch <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static void insert(ens_t *s, const ag_ensure_case_t *ec, uint32_t obj)
{
    const ag_fnode_t *o = N(s, obj);
    const char *src = s->f->src;
    ag_buf_t prop, b;
    ag_buf_init(&prop, 1u << 20);
    ag_buf_init(&b, 1u << 20);
    int rc = ag_buf_append(&prop, ec->key, ec->key_len);
    if (rc == AG_OK)
        rc = ag_buf_append(&prop, ": ", 2);
    if (rc == AG_OK && ec->has_code)
        rc = ag_buf_append(&prop, ec->value, ec->value_len);
    else if (rc == AG_OK)
        rc = quoted(&prop, pick_quote(s, ec, AG_NONE, obj), ag_str(ec->value, ec->value_len));
    uint32_t last = AG_NONE, close = AG_NONE;
    for (uint32_t c = o->first_child; c != AG_NONE; c = N(s, c)->next_sib) {
        if (N(s, c)->named && !N(s, c)->extra)
            last = c;
        if (!N(s, c)->named && T(s, c).len == 1 && T(s, c).ptr[0] == '}' && !N(s, c)->missing)
            close = c;
    }
    /* an object the parser had to repair has no trustworthy last property to insert after */
    if (rc != AG_OK || close == AG_NONE || o->has_error)
        goto out;
    uint32_t guard = N(s, close)->end > s->guard ? N(s, close)->end : s->guard;
    if (last == AG_NONE) {
        /* {} or { } → { key: value } */
        uint32_t open_end = o->start + 1;
        uint32_t close_start = N(s, close)->start;
        for (uint32_t i = open_end; i < close_start; i++)
            if (src[i] != ' ' && src[i] != '\t')
                goto out; /* comments or line breaks inside: leave it */
        rc = ag_buf_appendc(&b, ' ');
        if (rc == AG_OK)
            rc = ag_buf_append(&b, prop.ptr, prop.len);
        if (rc == AG_OK)
            rc = ag_buf_appendc(&b, ' ');
        if (rc == AG_OK)
            rc = ag_engine_edit(s->e, s->rule, open_end, close_start, ag_buf_str(&b), guard);
        if (rc == AG_OK && insert_is_safe(ec))
            ag_engine_edit_is_safe(s->e);
        goto out;
    }
    uint32_t after = N(s, last)->end; /* end of the last property, or of its comma */
    bool comma = false;
    for (uint32_t c = N(s, last)->next_sib; c != AG_NONE && c != close; c = N(s, c)->next_sib) {
        if (!N(s, c)->named && T(s, c).len == 1 && T(s, c).ptr[0] == ',') {
            comma = true;
            after = N(s, c)->end;
            break;
        }
        if (!N(s, c)->extra)
            break;
    }
    bool multiline = memchr(src + after, '\n', N(s, close)->start - after) != NULL;
    if (!multiline) {
        if (comma) {
            rc = ag_buf_appendc(&b, ' ');
            if (rc == AG_OK)
                rc = ag_buf_append(&b, prop.ptr, prop.len);
            if (rc == AG_OK)
                rc = ag_buf_appendc(&b, ',');
        } else {
            rc = ag_buf_append(&b, ", ", 2);
            if (rc == AG_OK)
                rc = ag_buf_append(&b, prop.ptr, prop.len);
        }
        if (rc == AG_OK)
            rc = ag_engine_edit(s->e, s->rule, after, after, ag_buf_str(&b), guard);
        if (rc == AG_OK && insert_is_safe(ec))
            ag_engine_edit_is_safe(s->e);
        goto out;
    }
    /* multi-line: a new line after the last property's line (after a trailing comment), with
     * that line's indentation bytes and line ending */
    uint32_t le = after;
    while (le < s->e->code_len && src[le] != '\n')
        le++;
    if (le > N(s, close)->start)
        goto out;
    uint32_t ins = le;
    if (ins > after && src[ins - 1] == '\r')
        ins--;
    ag_str_t indent, eol;
    ag_engine_line_info(s->e, N(s, last)->start, &indent, &eol);
    uint32_t edit_start = comma ? ins : N(s, last)->end;
    if (!comma)
        rc = ag_buf_appendc(&b, ',');
    if (rc == AG_OK && !comma)
        rc = ag_buf_append(&b, src + N(s, last)->end, ins - N(s, last)->end);
    if (rc == AG_OK)
        rc = ag_buf_append(&b, eol.ptr, eol.len);
    if (rc == AG_OK)
        rc = ag_buf_append(&b, indent.ptr, indent.len);
    if (rc == AG_OK)
        rc = ag_buf_append(&b, prop.ptr, prop.len);
    if (rc == AG_OK && comma)
        rc = ag_buf_appendc(&b, ',');
    if (rc == AG_OK)
        rc = ag_engine_edit(s->e, s->rule, edit_start, ins, ag_buf_str(&b), guard);
    if (rc == AG_OK && insert_is_safe(ec))
        ag_engine_edit_is_safe(s->e);
out:
    ag_buf_dispose(&prop);
    ag_buf_dispose(&b);
}

/* ---- running the cases ---- */

static bool run_case(ens_t *s, const ag_ensure_case_t *ec, uint32_t leaf);

static void run_value(ens_t *s, const ag_ensure_case_t *ec, uint32_t raw)
{
    if (++s->depth > MAX_FOLLOW * 2) {
        s->depth--;
        return;
    }
    /* a value is pinned only once it is complete: a reply cut inside it is left alone */
    uint32_t saved_guard = s->guard;
    if (N(s, raw)->end > s->guard)
        s->guard = N(s, raw)->end;
    leaves_t l = {0};
    follow(s, raw, &l, 0);
    for (uint32_t i = 0; i < l.n; i++) {
        uint32_t v = l.v[i];
        if (ec->has_string || ec->has_code) {
            pin(s, ec, v);
            continue;
        }
        const ag_ensure_case_t *cases = ec->recurse ? s->def->ensure->root.cases : ec->cases;
        uint32_t ncases = ec->recurse ? s->def->ensure->root.ncases : ec->ncases;
        for (uint32_t c = 0; c < ncases; c++)
            if (run_case(s, &cases[c], v))
                break;
    }
    s->guard = saved_guard;
    s->depth--;
}

static void on_missing(ens_t *s, const ag_ensure_case_t *ec, uint32_t obj)
{
    uint8_t m = ec->on_missing;
    if (m == AG_MISSING_DEFAULT)
        m = (ec->has_string || ec->has_code) ? AG_MISSING_INSERT : AG_MISSING_SKIP;
    if (m == AG_MISSING_INSERT)
        insert(s, ec, obj);
    else if (m == AG_MISSING_FLAG)
        ag_engine_flag(s->e, s->rule, obj, "the property is missing");
}

static void step_key(ens_t *s, const ag_ensure_case_t *ec, uint32_t obj)
{
    if (!is(s, obj, s->k->object))
        return;
    lookup_t r;
    lookup(s, obj, ag_str(ec->key, ec->key_len), &r, 0);
    if (r.state == LK_FOUND && r.value != AG_NONE)
        run_value(s, ec, r.value);
    else if (r.state == LK_MISSING)
        on_missing(s, ec, r.object);
}

/* Applies ec to leaf (an already followed value). False when its `when` does not hold. */
static bool run_case(ens_t *s, const ag_ensure_case_t *ec, uint32_t leaf)
{
    const ag_rnode_t *when = ec->when[s->lang];
    if (when) {
        ag_env_t probe = s->env;
        if (!ag_match_rnode(&s->e->m, when, leaf, &probe))
            return false;
    }
    switch ((ag_step_t)ec->step) {
    case AG_STEP_SELF:
        run_value(s, ec, leaf);
        break;
    case AG_STEP_KEY:
        step_key(s, ec, leaf);
        break;
    case AG_STEP_ARG: {
        if (!is(s, leaf, s->k->call))
            break;
        uint32_t args = field(s, leaf, s->k->f_arguments);
        if (args == AG_NONE)
            break;
        uint32_t nth = 0;
        for (uint32_t c = N(s, args)->first_child; c != AG_NONE; c = N(s, c)->next_sib) {
            if (!N(s, c)->named || N(s, c)->extra)
                continue;
            if (nth++ == ec->arg) {
                run_value(s, ec, c);
                break;
            }
        }
        break;
    }
    case AG_STEP_EACH: {
        if (!is(s, leaf, s->k->array))
            break;
        for (uint32_t c = N(s, leaf)->first_child; c != AG_NONE; c = N(s, c)->next_sib) {
            if (!N(s, c)->named || N(s, c)->extra)
                continue;
            leaves_t l = {0};
            follow(s, c, &l, 0);
            for (uint32_t i = 0; i < l.n; i++)
                step_key(s, ec, l.v[i]);
        }
        break;
    }
    }
    return true;
}

void ag_ensure_run(ag_engine_t *e, uint32_t rule, ag_lang_t lang, uint32_t node,
                   const ag_env_t *env)
{
    ens_t s;
    memset(&s, 0, sizeof(s));
    s.e = e;
    s.f = &e->flat;
    s.k = &e->kinds[lang];
    s.rule = rule;
    s.lang = lang;
    s.def = &e->rules->rules[rule];
    s.env = *env;
    s.match = node;
    const ag_ensure_t *en = s.def->ensure;
    uint32_t target = node;
    if (en->target >= 0) {
        if (env->s[en->target].state != AG_SLOT_SINGLE)
            return;
        target = env->s[en->target].node;
    }
    leaves_t l = {0};
    follow(&s, target, &l, 0);
    for (uint32_t i = 0; i < l.n; i++)
        run_case(&s, &en->root, l.v[i]);
}
