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
        escape_sequence, template_string, template_substitution, call, arguments, identifier, arrow,
        function_expression, function_declaration, statement_block, return_statement, ternary,
        parens, as_expr, satisfies_expr, non_null, await_expr, lexical_declaration,
        variable_declarator, export_statement, program, array, comment, method_definition, number,
        formal_parameters, class_body, class_declaration, switch_case, import_statement,
        import_clause, import_specifier, namespace_import, variable_declaration, member_expression,
        new_expression;
    TSFieldId f_key, f_value, f_function, f_arguments, f_body, f_name, f_parameters, f_parameter,
        f_consequence, f_alternative, f_declaration, f_kind, f_alias, f_source, f_condition,
        f_constructor;
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
    uint32_t match; /* the node the rule matched */
    int mode;       /* ens_mode_t */
} ens_t;

/* ag_ensure_block runs every match once, following every const; when that reached a const (or
 * local function), its edits are taken back and dry passes learn which uses of each the matched
 * values reach, so that the last pass knows whether a const is used by anything else. */
typedef enum ens_mode {
    ENS_FULL, /* follow every const, mark the uses reached; edits and flags */
    ENS_DRY,  /* no edits: follow a const only when every use of it was reached; mark */
    ENS_EDIT, /* the same, making edits and flags */
} ens_mode_t;

#define USE_PREV 1u /* reached by the previous pass */
#define USE_CUR 2u  /* reached by this pass */

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
        k->import_statement = K(l, "import_statement");
        k->import_clause = K(l, "import_clause");
        k->import_specifier = K(l, "import_specifier");
        k->namespace_import = K(l, "namespace_import");
        k->variable_declaration = K(l, "variable_declaration");
        k->member_expression = K(l, "member_expression");
        k->new_expression = K(l, "new_expression");
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
        k->f_alias = F(l, "alias");
        k->f_source = F(l, "source");
        k->f_condition = F(l, "condition");
        k->f_constructor = F(l, "constructor");
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

/* What a name is bound to. */
typedef struct binding {
    bool found;     /* the name is bound in an enclosing scope (or is a parameter) */
    uint32_t value; /* the const's value, or the function declaration; AG_NONE when the binding
                       is nothing we can follow (`let`, a parameter, a repaired declaration) */
    uint32_t name;  /* the node that declares the name */
    uint32_t scope; /* the node whose statements hold the declaration */
    bool exported;  /* `export const` / `export function`: other modules may use it too */
} binding_t;

/* A declaration statement directly in scope that binds name. */
static void declared_in(const ens_t *s, uint32_t scope, ag_str_t name, binding_t *b)
{
    for (uint32_t st = N(s, scope)->first_child; st != AG_NONE; st = N(s, st)->next_sib) {
        uint32_t d = st;
        bool exported = false;
        if (is(s, d, s->k->export_statement)) {
            uint32_t inner = field(s, d, s->k->f_declaration);
            if (inner == AG_NONE)
                continue;
            d = inner;
            exported = true;
        }
        if (is(s, d, s->k->function_declaration)) {
            uint32_t nm = field(s, d, s->k->f_name);
            if (nm != AG_NONE && ag_str_eq(T(s, nm), name)) {
                b->found = true;
                b->name = nm;
                b->scope = scope;
                b->exported = exported;
                b->value = N(s, d)->has_error ? AG_NONE : d;
                return;
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
            b->found = true;
            b->name = nm;
            b->scope = scope;
            b->exported = exported;
            b->value = is_const && !broken ? field(s, v, s->k->f_value) : AG_NONE;
            return;
        }
    }
}

static void resolve(const ens_t *s, uint32_t use, ag_str_t name, binding_t *b)
{
    memset(b, 0, sizeof(*b));
    b->value = b->name = b->scope = AG_NONE;
    for (uint32_t a = N(s, use)->parent; a != AG_NONE; a = N(s, a)->parent) {
        if (is(s, a, s->k->program) || is(s, a, s->k->statement_block) ||
            is(s, a, s->k->switch_case) || is(s, a, s->k->class_body)) {
            declared_in(s, a, name, b);
            if (b->found)
                return;
        }
        if (is_function(s, a) && declares_param(s, a, name)) {
            b->found = true;
            return;
        }
    }
}

/* Whether the value bound to b may be followed from use: always in the first dry pass; later
 * only when it is not exported and every other use of the name that resolves to the same
 * declaration was reached by a matched value in the previous pass (so editing it changes
 * nothing but what the rules pin). Marks use as reached. */
static bool may_follow(const ens_t *s, uint32_t use, const binding_t *b)
{
    uint8_t *uses = s->e->uses;
    uses[use] |= USE_CUR;
    if (s->mode == ENS_FULL)
        return true;
    /* a fragment's top level is part of a file we do not see: other uses may be outside it */
    if (b->exported || (s->e->cur_frag && is(s, b->scope, s->k->program)))
        return false;
    ag_str_t name = T(s, b->name);
    for (uint32_t i = b->scope + 1; i < N(s, b->scope)->subtree_end; i++) {
        if (i == b->name || i == use || !ag_str_eq(T(s, i), name) ||
            (!is(s, i, s->k->identifier) && !is(s, i, s->k->shorthand)))
            continue;
        if (uses[i] & USE_PREV)
            continue;
        binding_t o;
        resolve(s, i, name, &o);
        if (o.found && o.name == b->name)
            return false; /* used by something the rules do not pin */
    }
    return true;
}

/* ---- program-level names, for `import` ---- */

typedef enum {
    BOUND_NO,    /* not bound at the top of the program */
    BOUND_OK,    /* imported from the module (or a module named like it), or a const made by a
                    call (a provider factory such as createOpenAI) */
    BOUND_OTHER, /* bound to something else: calling it would not do what the rule means */
} bound_t;

static bool module_matches(ag_str_t have, ag_str_t want)
{
    /* '@ai-sdk/openai' also accepts '@ai-sdk/openai-v5' and '@ai-sdk/openai/internal' */
    if (have.len < want.len || memcmp(have.ptr, want.ptr, want.len) != 0)
        return false;
    return have.len == want.len || have.ptr[want.len] == '-' || have.ptr[want.len] == '/';
}

static bound_t program_binding(const ens_t *s, ag_str_t name, ag_str_t from, uint32_t *last_import)
{
    *last_import = AG_NONE;
    bound_t r = BOUND_NO;
    for (uint32_t st = N(s, 0)->first_child; st != AG_NONE; st = N(s, st)->next_sib) {
        if (is(s, st, s->k->import_statement)) {
            *last_import = st;
            uint32_t src = field(s, st, s->k->f_source);
            ag_str_t mod = src != AG_NONE && T(s, src).len >= 2
                               ? ag_str(T(s, src).ptr + 1, T(s, src).len - 2)
                               : ag_str("", 0);
            for (uint32_t i = st + 1; i < N(s, st)->subtree_end; i++) {
                if (!is(s, i, s->k->identifier) || !ag_str_eq(T(s, i), name))
                    continue;
                uint32_t par = N(s, i)->parent;
                bool binds = is(s, par, s->k->import_clause) || is(s, par, s->k->namespace_import);
                if (is(s, par, s->k->import_specifier)) {
                    uint32_t alias = field(s, par, s->k->f_alias);
                    binds = alias == i || (alias == AG_NONE && field(s, par, s->k->f_name) == i);
                }
                if (binds && r != BOUND_OTHER)
                    r = module_matches(mod, from) ? BOUND_OK : BOUND_OTHER;
            }
            continue;
        }
        uint32_t d = st;
        if (is(s, d, s->k->export_statement)) {
            d = field(s, d, s->k->f_declaration);
            if (d == AG_NONE)
                continue;
        }
        if (is(s, d, s->k->function_declaration) || is(s, d, s->k->class_declaration)) {
            uint32_t nm = field(s, d, s->k->f_name);
            if (nm != AG_NONE && ag_str_eq(T(s, nm), name))
                r = BOUND_OTHER;
            continue;
        }
        if (!is(s, d, s->k->lexical_declaration) && !is(s, d, s->k->variable_declaration))
            continue;
        for (uint32_t v = N(s, d)->first_child; v != AG_NONE; v = N(s, v)->next_sib) {
            uint32_t nm = is(s, v, s->k->variable_declarator) ? field(s, v, s->k->f_name) : AG_NONE;
            if (nm == AG_NONE || !ag_str_eq(T(s, nm), name))
                continue;
            uint32_t val = field(s, v, s->k->f_value);
            if (r != BOUND_OTHER)
                r = is(s, val, s->k->call) ? BOUND_OK : BOUND_OTHER;
        }
    }
    return r;
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

/* A condition that reads the environment (`process.env.X`, `import.meta.env.X`): the value it
 * picks is decided where the code runs, so the expression is one value, replaced as a whole. */
static bool reads_env(const ens_t *s, uint32_t cond)
{
    if (cond == AG_NONE)
        return false;
    ag_str_t t = T(s, cond);
    return ag_memmem(t, ag_cstr("process.env")) || ag_memmem(t, ag_cstr("import.meta.env"));
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
    if (sym == k->parens || sym == k->as_expr || sym == k->satisfies_expr || sym == k->non_null ||
        sym == k->await_expr) {
        uint32_t x = first_named(s, v);
        if (x != AG_NONE) {
            follow(s, x, out, depth + 1);
            return;
        }
    } else if (sym == k->identifier || sym == k->shorthand) {
        binding_t b;
        resolve(s, v, T(s, v), &b);
        if (b.value != AG_NONE && may_follow(s, v, &b)) {
            if (is(s, b.value, k->function_declaration))
                follow_returns(s, b.value, out, depth);
            else
                follow(s, b.value, out, depth + 1);
            return;
        }
    } else if (sym == k->arrow || sym == k->function_expression) {
        follow_returns(s, v, out, depth);
        return;
    } else if (sym == k->ternary) {
        if (!reads_env(s, field(s, v, k->f_condition))) {
            follow(s, field(s, v, k->f_consequence), out, depth + 1);
            follow(s, field(s, v, k->f_alternative), out, depth + 1);
            return;
        }
    } else if (sym == k->call) {
        uint32_t fn = field(s, v, k->f_function);
        if (is(s, fn, k->identifier)) {
            binding_t b;
            resolve(s, fn, T(s, fn), &b);
            uint32_t d = b.value;
            if (d != AG_NONE &&
                (is(s, d, k->arrow) || is(s, d, k->function_expression) ||
                 is(s, d, k->function_declaration)) &&
                may_follow(s, fn, &b)) {
                follow_returns(s, d, out, depth);
                return;
            }
        }
    }
    add_leaf(out, v);
}

/* ---- objects ---- */

typedef enum {
    LK_MISSING,
    LK_FOUND,
    LK_HIDDEN, /* not found in an object the parser had to repair: it may be in the broken part */
} lk_state_t;

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
    if (r->state == LK_MISSING && N(s, obj)->has_error)
        r->state = LK_HIDDEN;
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
        if (ch == '\\' || ch == q ||
            (q == '`' && ch == '$' && i + 1 < v.len && v.ptr[i + 1] == '{'))
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

static bool dry(const ens_t *s)
{
    return s->mode == ENS_DRY;
}

static void flag(ens_t *s, uint32_t node, const char *reason)
{
    if (!dry(s))
        ag_engine_flag(s->e, s->rule, node, reason);
}

/* The code of a `code:` value, its '...' literals written with the quote character q when q is a
 * double quote (the style of the code around). */
static int code_text(ag_buf_t *b, ag_str_t code, char q)
{
    int rc = AG_OK;
    for (size_t i = 0; i < code.len && rc == AG_OK; i++) {
        char ch = code.ptr[i];
        if (ch == '\'' && q == '"') {
            size_t j = i + 1;
            while (j < code.len && code.ptr[j] != '\'' && code.ptr[j] != '"' &&
                   code.ptr[j] != '\\' && code.ptr[j] != '\n')
                j++;
            if (j < code.len && code.ptr[j] == '\'') {
                rc = ag_buf_appendc(b, '"');
                if (rc == AG_OK)
                    rc = ag_buf_append(b, code.ptr + i + 1, j - i - 1);
                if (rc == AG_OK)
                    rc = ag_buf_appendc(b, '"');
                i = j;
                continue;
            }
        }
        rc = ag_buf_appendc(b, ch);
    }
    return rc;
}

/* Adds `import { NAME } from 'MODULE';` on a line after the last import of the block (or before
 * its first statement when it has none), in the quote and semicolon style of the code. */
static void add_import(ens_t *s, const ag_ensure_case_t *ec, uint32_t last, char q)
{
    const char *src = s->f->src;
    ag_buf_t b;
    ag_buf_init(&b, 4096);
    bool semi = true;
    uint32_t anchor = last;
    if (anchor == AG_NONE) {
        for (uint32_t st = N(s, 0)->first_child; st != AG_NONE; st = N(s, st)->next_sib)
            if (N(s, st)->named && !N(s, st)->extra) {
                anchor = st;
                break;
            }
        if (anchor == AG_NONE)
            goto out;
    }
    ag_str_t at = T(s, anchor);
    if (last != AG_NONE || is(s, anchor, s->k->lexical_declaration) ||
        is(s, anchor, s->k->export_statement))
        semi = at.len > 0 && at.ptr[at.len - 1] == ';';
    if (last != AG_NONE && q == 0) {
        uint32_t srcn = field(s, last, s->k->f_source);
        if (srcn != AG_NONE && T(s, srcn).len)
            q = T(s, srcn).ptr[0];
    }
    if (q == 0)
        q = '\'';
    ag_str_t indent, eol;
    ag_engine_line_info(s->e, N(s, anchor)->start, &indent, &eol);
    if (eol.len == 0)
        eol = ag_cstr("\n");
    ag_buf_t imp;
    ag_buf_init(&imp, 4096);
    int rc = ag_buf_append(&imp, "import { ", 9);
    if (rc == AG_OK)
        rc = ag_buf_append(&imp, ec->import_name, ec->import_name_len);
    if (rc == AG_OK)
        rc = ag_buf_append(&imp, " } from ", 8);
    if (rc == AG_OK)
        rc = quoted(&imp, q, ag_str(ec->import_from, ec->import_from_len));
    if (rc == AG_OK && semi)
        rc = ag_buf_appendc(&imp, ';');
    uint32_t ins;
    if (last != AG_NONE) {
        /* at the end of the last import's line, before its line ending */
        uint32_t le = N(s, last)->end;
        while (le < s->e->orig_len && src[le] != '\n')
            le++;
        ins = le;
        if (ins > N(s, last)->end && src[ins - 1] == '\r')
            ins--;
        if (rc == AG_OK)
            rc = ag_buf_append(&b, eol.ptr, eol.len);
        if (rc == AG_OK)
            rc = ag_buf_append(&b, imp.ptr, imp.len);
    } else {
        /* a line of its own before the first statement */
        ins = N(s, anchor)->start;
        while (ins > 0 && src[ins - 1] != '\n')
            ins--;
        if (rc == AG_OK)
            rc = ag_buf_append(&b, imp.ptr, imp.len);
        if (rc == AG_OK)
            rc = ag_buf_append(&b, eol.ptr, eol.len);
    }
    if (rc == AG_OK && ins <= s->e->orig_len)
        rc = ag_engine_edit(s->e, s->rule, ins, ins, ag_buf_str(&b), ins);
    ag_buf_dispose(&imp);
out:
    ag_buf_dispose(&b);
}

/* Whether the name a `code` value calls can be used here: bound to the module (or to a provider
 * made by a call), or unbound (then *need_import). False when it names something else. */
static bool import_usable(const ens_t *s, const ag_ensure_case_t *ec, bool *need_import,
                          uint32_t *last)
{
    *need_import = false;
    *last = AG_NONE;
    if (ec->import_name == NULL)
        return true;
    bound_t st = program_binding(s, ag_str(ec->import_name, ec->import_name_len),
                                 ag_str(ec->import_from, ec->import_from_len), last);
    *need_import = st == BOUND_NO;
    return st != BOUND_OTHER;
}

/* The text that pins a value: ec's code (in the quote style around near) or its string. */
static int value_text(const ens_t *s, const ag_ensure_case_t *ec, uint32_t near, ag_buf_t *b,
                      char *qout)
{
    char q = pick_quote(s, ec, AG_NONE, near);
    *qout = q;
    if (ec->has_code)
        return code_text(b, ag_str(ec->value, ec->value_len), q);
    return quoted(b, q, ag_str(ec->value, ec->value_len));
}

static void pin(ens_t *s, const ag_ensure_case_t *ec, uint32_t leaf)
{
    if (dry(s))
        return;
    ag_str_t want = ag_str(ec->value, ec->value_len);
    ag_buf_t b;
    ag_buf_init(&b, 1u << 20);
    const ag_fnode_t *n = N(s, leaf);
    int rc = AG_OK;
    bool need_import = false;
    uint32_t last_import = AG_NONE;
    char q = 0;
    /* what the parser could not place is not a value we can trust to pin, and a value that holds
     * the match itself (`const m = f(new Agent({ model: m }))`) is not its value */
    const ag_fnode_t *mn = N(s, s->match);
    if (n->has_error || inside_error(s, leaf)) {
        flag(s, leaf, "a syntax error around this value: it cannot be pinned safely");
        goto out;
    }
    if (n->start <= mn->start && mn->end <= n->end) {
        flag(s, leaf, "the value holds the matched code itself");
        goto out;
    }
    /* `{ model }` becomes `{ model: value }` */
    size_t pre = 0;
    if (n->sym == s->k->shorthand) {
        rc = ag_buf_append(&b, T(s, leaf).ptr, T(s, leaf).len);
        if (rc == AG_OK)
            rc = ag_buf_append(&b, ": ", 2);
        pre = b.len;
    }
    if (rc == AG_OK && ec->has_code) {
        rc = value_text(s, ec, leaf, &b, &q);
        ag_str_t v = ag_str(b.ptr + pre, b.len - pre);
        if (rc != AG_OK || ag_str_eq(T(s, leaf), v) || ag_str_eq(T(s, leaf), want))
            goto out;
        if (!import_usable(s, ec, &need_import, &last_import)) {
            flag(s, leaf, "the pinned code calls a name that this code binds to something else");
            goto out;
        }
        if (need_import && s->e->cur_frag) {
            /* a fragment does not show the file's imports: adding one would be a guess */
            flag(s, leaf, "fragment");
            goto out;
        }
    } else if (rc == AG_OK) {
        ag_str_t have;
        if (literal_content(s, leaf, &have) && ag_str_eq(have, want))
            goto out;
        q = pick_quote(s, ec, leaf, AG_NONE);
        if (is(s, leaf, s->k->string) || is(s, leaf, s->k->template_string)) {
            /* a value that needs escapes is equal when it is spelled as we would spell it (a
             * literal is never a shorthand: b is empty here) */
            rc = quoted(&b, s->f->src[n->start], want);
            if (rc == AG_OK && ag_str_eq(ag_buf_str(&b), T(s, leaf)))
                goto out;
            ag_buf_reset(&b);
        }
        if (rc == AG_OK)
            rc = quoted(&b, q, want);
    }
    if (rc == AG_OK)
        rc = ag_engine_edit(s->e, s->rule, n->start, n->end, ag_buf_str(&b), n->end);
    /* a whole string or template literal replaced by a literal quoted (and escaped) for the same
     * quote character cannot change how the rest parses */
    if (rc == AG_OK && ec->has_string && !n->has_error && !n->missing &&
        (n->sym == s->k->string || n->sym == s->k->template_string) && b.len &&
        b.ptr[0] == s->f->src[n->start])
        ag_engine_edit_is_safe(s->e);
    if (rc == AG_OK && need_import)
        add_import(s, ec, last_import, q);
out:
    ag_buf_dispose(&b);
}

/* Whether `key: 'value'` inserted into a well-formed object can be trusted to parse: the key is
 * an identifier and the value a literal quoted by quoted(). */
static bool insert_is_safe(const ag_ensure_case_t *kc, const ag_ensure_case_t *vc)
{
    return vc->has_string && ag_js_ident(ag_str(kc->key, kc->key_len));
}

/* Inserts `key: value` as the last property of obj (see shared/reference/rules.md §6.3): the key
 * of kc, the value of vc. */
static void insert(ens_t *s, const ag_ensure_case_t *kc, const ag_ensure_case_t *vc, uint32_t obj)
{
    if (dry(s))
        return;
    const ag_fnode_t *o = N(s, obj);
    const char *src = s->f->src;
    const char *why = "the property is missing and cannot be inserted here";
    ag_buf_t prop, b;
    ag_buf_init(&prop, 1u << 20);
    ag_buf_init(&b, 1u << 20);
    bool need_import = false;
    uint32_t last_import = AG_NONE;
    char q = 0;
    int rc = ag_buf_append(&prop, kc->key, kc->key_len);
    if (rc == AG_OK)
        rc = ag_buf_append(&prop, ": ", 2);
    if (rc == AG_OK)
        rc = value_text(s, vc, obj, &prop, &q);
    if (rc == AG_OK && !import_usable(s, vc, &need_import, &last_import)) {
        why = "the property is missing, and the value to insert calls a name that this code "
              "binds to something else";
        rc = AG_EINVAL;
    }
    if (rc == AG_OK && need_import && s->e->cur_frag) {
        why = "fragment"; /* the file's imports are not in view */
        rc = AG_EINVAL;
    }
    uint32_t last = AG_NONE, close = AG_NONE;
    for (uint32_t c = o->first_child; c != AG_NONE; c = N(s, c)->next_sib) {
        if (N(s, c)->named && !N(s, c)->extra)
            last = c;
        if (!N(s, c)->named && T(s, c).len == 1 && T(s, c).ptr[0] == '}' && !N(s, c)->missing)
            close = c;
    }
    /* an object the parser had to repair has no trustworthy last property to insert after */
    if (rc != AG_OK || close == AG_NONE || o->has_error)
        goto fail;
    uint32_t guard = N(s, close)->end; /* an insertion needs the object's closing brace */
    uint32_t start, end;
    if (last == AG_NONE) {
        /* {} or { } → { key: value } */
        uint32_t open_end = o->start + 1;
        uint32_t close_start = N(s, close)->start;
        for (uint32_t i = open_end; i < close_start; i++)
            if (src[i] != ' ' && src[i] != '\t')
                goto fail; /* comments or line breaks inside: leave it */
        rc = ag_buf_appendc(&b, ' ');
        if (rc == AG_OK)
            rc = ag_buf_append(&b, prop.ptr, prop.len);
        if (rc == AG_OK)
            rc = ag_buf_appendc(&b, ' ');
        start = open_end;
        end = close_start;
        goto edit;
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
        start = end = after;
        goto edit;
    }
    /* multi-line: a new line after the last property's line (after a trailing comment), with
     * that line's indentation bytes and line ending */
    uint32_t le = after;
    while (le < s->e->code_len && src[le] != '\n')
        le++;
    if (le > N(s, close)->start)
        goto fail;
    uint32_t ins = le;
    if (ins > after && src[ins - 1] == '\r')
        ins--;
    ag_str_t indent, eol;
    ag_engine_line_info(s->e, N(s, last)->start, &indent, &eol);
    start = comma ? ins : N(s, last)->end;
    end = ins;
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
edit:
    if (rc == AG_OK)
        rc = ag_engine_edit(s->e, s->rule, start, end, ag_buf_str(&b), guard);
    if (rc == AG_OK && insert_is_safe(kc, vc))
        ag_engine_edit_is_safe(s->e);
    if (rc == AG_OK && need_import)
        add_import(s, vc, last_import, q);
    goto out;
fail:
    flag(s, obj, why);
out:
    ag_buf_dispose(&prop);
    ag_buf_dispose(&b);
}

/* ---- running the cases ---- */

static bool run_case(ens_t *s, const ag_ensure_case_t *ec, uint32_t leaf);

static bool when_holds(ens_t *s, const ag_ensure_case_t *ec, uint32_t node)
{
    const ag_rnode_t *when = ec->when[s->lang];
    if (when == NULL)
        return true;
    ag_env_t probe = s->env;
    return ag_match_rnode(&s->e->m, when, node, &probe);
}

static void run_value(ens_t *s, const ag_ensure_case_t *ec, uint32_t raw)
{
    if (++s->depth > MAX_FOLLOW * 2) {
        s->depth--;
        flag(s, raw, "the value is nested too deeply to follow");
        return;
    }
    leaves_t l = {0};
    follow(s, raw, &l, 0);
    if (l.n == 0)
        flag(s, raw, "the value comes from code that returns nothing visible here");
    for (uint32_t i = 0; i < l.n; i++) {
        uint32_t v = l.v[i];
        if (ec->has_string || ec->has_code) {
            pin(s, ec, v);
            continue;
        }
        if (ec->nsteps) {
            for (uint32_t st = 0; st < ec->nsteps; st++)
                run_case(s, &ec->steps[st], v);
            continue;
        }
        const ag_ensure_case_t *cases = ec->recurse ? s->def->ensure->root.cases : ec->cases;
        uint32_t ncases = ec->recurse ? s->def->ensure->root.ncases : ec->ncases;
        uint32_t c = 0;
        while (c < ncases && !run_case(s, &cases[c], v))
            c++;
        if (c == ncases)
            flag(s, v, "no case of the rule applies to this value");
    }
    s->depth--;
}

static void on_missing(ens_t *s, const ag_ensure_case_t *ec, uint32_t obj)
{
    uint8_t m = ec->on_missing;
    if (m == AG_MISSING_DEFAULT)
        m = (ec->has_string || ec->has_code || ec->nmissing) ? AG_MISSING_INSERT : AG_MISSING_FLAG;
    if (m == AG_MISSING_FLAG) {
        flag(s, obj, "the property is missing");
    } else if (m == AG_MISSING_INSERT && ec->nmissing == 0) {
        insert(s, ec, ec, obj);
    } else if (m == AG_MISSING_INSERT) {
        for (uint32_t i = 0; i < ec->nmissing; i++)
            if (when_holds(s, &ec->missing[i], obj)) {
                insert(s, ec, &ec->missing[i], obj);
                return;
            }
        flag(s, obj, "the property is missing and no `missing` value applies");
    }
}

static void step_key(ens_t *s, const ag_ensure_case_t *ec, uint32_t obj)
{
    if (!is(s, obj, s->k->object)) {
        flag(s, obj, "not an object literal that this code shows");
        return;
    }
    lookup_t r;
    lookup(s, obj, ag_str(ec->key, ec->key_len), &r, 0);
    if (r.state == LK_FOUND && r.value != AG_NONE)
        run_value(s, ec, r.value);
    else if (r.state == LK_FOUND)
        flag(s, obj, "the property has no value the parser could read");
    else if (r.state == LK_HIDDEN)
        flag(s, obj, "a syntax error in this object may hide the property");
    else
        on_missing(s, ec, r.object);
}

/* Applies ec to leaf (an already followed value). False when its `when` does not hold. */
static bool run_case(ens_t *s, const ag_ensure_case_t *ec, uint32_t leaf)
{
    if (!when_holds(s, ec, leaf))
        return false;
    switch ((ag_step_t)ec->step) {
    case AG_STEP_SELF:
        run_value(s, ec, leaf);
        break;
    case AG_STEP_KEY:
        step_key(s, ec, leaf);
        break;
    case AG_STEP_ARG: {
        if (!is(s, leaf, s->k->call)) {
            flag(s, leaf, "not a call");
            break;
        }
        uint32_t args = field(s, leaf, s->k->f_arguments);
        uint32_t nth = 0;
        for (uint32_t c = args == AG_NONE ? AG_NONE : N(s, args)->first_child; c != AG_NONE;
             c = N(s, c)->next_sib) {
            if (!N(s, c)->named || N(s, c)->extra)
                continue;
            if (nth++ == ec->arg) {
                run_value(s, ec, c);
                return true;
            }
        }
        flag(s, leaf, "the call has no such argument");
        break;
    }
    case AG_STEP_EACH: {
        if (!is(s, leaf, s->k->array)) {
            flag(s, leaf, "not an array literal that this code shows");
            break;
        }
        for (uint32_t c = N(s, leaf)->first_child; c != AG_NONE; c = N(s, c)->next_sib) {
            if (!N(s, c)->named || N(s, c)->extra)
                continue;
            leaves_t l = {0};
            follow(s, c, &l, 0);
            if (l.n == 0)
                flag(s, c, "the value comes from code that returns nothing visible here");
            for (uint32_t i = 0; i < l.n; i++)
                step_key(s, ec, l.v[i]);
        }
        break;
    }
    }
    return true;
}

static void ens_init(ens_t *s, ag_engine_t *e, ag_lang_t lang, uint32_t rule, int mode)
{
    memset(s, 0, sizeof(*s));
    s->e = e;
    s->f = &e->flat;
    s->k = &e->kinds[lang];
    s->rule = rule;
    s->lang = lang;
    s->def = &e->rules->rules[rule];
    s->mode = mode;
    /* a `matches` in a `when` names a util of this rule, while the matcher may still be bound to
     * the utils of the last rule the block's scan tried */
    ag_matcher_bind(&e->m, &e->flat, s->def->lang[lang].utils, s->def->lang[lang].nutils);
}

static void run_match(ag_engine_t *e, ag_lang_t lang, const ag_ens_match_t *m, int mode)
{
    ens_t s;
    ens_init(&s, e, lang, m->rule, mode);
    s.env = m->env;
    s.match = m->node;
    const ag_ensure_t *en = s.def->ensure;
    uint32_t target = m->node;
    if (en->target >= 0) {
        if (m->env.s[en->target].state != AG_SLOT_SINGLE)
            return;
        target = m->env.s[en->target].node;
    }
    leaves_t l = {0};
    follow(&s, target, &l, 0);
    if (l.n == 0)
        flag(&s, target, "the value comes from code that returns nothing visible here");
    for (uint32_t i = 0; i < l.n; i++)
        run_case(&s, &en->root, l.v[i]);
}

/* Moves this pass's marks to the previous pass's; true when they differ. */
static bool shift_uses(ag_engine_t *e)
{
    bool changed = false;
    for (uint32_t i = 0; i < e->flat.count; i++) {
        uint8_t prev = (e->uses[i] & USE_CUR) ? USE_PREV : 0;
        changed |= (e->uses[i] & USE_PREV) != prev;
        e->uses[i] = prev;
    }
    return changed;
}

/* In code with syntax errors a construct a rule must judge may not match at all (the parser
 * could not place it). An identifier that holds one of an active ensure rule's literals, in
 * callee position (`new X(`, `X(`) or inside an ERROR node, within a region with errors, outside
 * imports, that no match of the rule covers, is flagged: never silent about what could not be
 * judged. */
static void flag_hidden(ag_engine_t *e, ag_lang_t lang)
{
    const ag_flat_t *f = &e->flat;
    const kinds_t *k = &e->kinds[lang];
    for (uint32_t r = 0; r < e->rules->n; r++) {
        const ag_rule_def_t *def = &e->rules->rules[r];
        if (!e->active[r] || !def->ensure || def->nliterals == 0)
            continue;
        ens_t s;
        ens_init(&s, e, lang, r, ENS_EDIT);
        for (uint32_t i = 0; i < f->count; i++) {
            const ag_fnode_t *n = &f->nodes[i];
            if (is(&s, i, k->import_statement)) {
                i = n->subtree_end - 1;
                continue;
            }
            if (n->sym != k->identifier || n->parent == AG_NONE)
                continue;
            const ag_fnode_t *par = &f->nodes[n->parent];
            bool callee =
                (par->sym == k->new_expression && field(&s, n->parent, k->f_constructor) == i) ||
                (par->sym == k->call && field(&s, n->parent, k->f_function) == i);
            if (!par->error && !callee)
                continue;
            bool broken = false;
            for (uint32_t a = n->parent; a != AG_NONE && !broken; a = f->nodes[a].parent)
                broken = f->nodes[a].error || f->nodes[a].has_error;
            if (!broken)
                continue;
            ag_str_t t = ag_flat_text(f, i);
            bool lit = false;
            for (uint32_t l = 0; l < def->nliterals && !lit; l++)
                lit = ag_memmem(t, ag_str(def->literals[l], def->literal_lens[l])) != NULL;
            if (!lit)
                continue;
            bool covered = false;
            for (uint32_t m = 0; m < e->nens && !covered; m++) {
                const ag_fnode_t *mn = &f->nodes[e->ens[m].node];
                covered = e->ens[m].rule == r && mn->start <= n->start && n->end <= mn->end;
            }
            if (!covered)
                flag(&s, i, "a syntax error here hides code this rule must judge");
        }
    }
}

void ag_ensure_block(ag_engine_t *e, ag_lang_t lang)
{
    if (e->flat.errors)
        flag_hidden(e, lang);
    if (e->nens == 0)
        return;
    if (e->uses_cap < e->flat.count) {
        free(e->uses);
        e->uses_cap = e->flat.count;
        e->uses = ag_xmalloc(e->uses_cap);
    }
    memset(e->uses, 0, e->flat.count);
    uint32_t nedits = e->nedits, nevents = e->nevents, flags = e->res.flags;
    size_t text = e->text.len, evtext = e->evtext.len;
    for (uint32_t i = 0; i < e->nens; i++)
        run_match(e, lang, &e->ens[i], ENS_FULL);
    if (shift_uses(e)) {
        /* a const was followed: whether to edit it depends on its other uses */
        e->nedits = nedits;
        e->nevents = nevents;
        e->res.flags = flags;
        e->text.len = text;
        e->evtext.len = evtext;
        if (e->text.ptr)
            e->text.ptr[text] = '\0';
        if (e->evtext.ptr)
            e->evtext.ptr[evtext] = '\0';
        /* the set of uses reached only shrinks from pass to pass; a few passes settle it */
        for (int pass = 0; pass < 4; pass++) {
            for (uint32_t i = 0; i < e->nens; i++)
                run_match(e, lang, &e->ens[i], ENS_DRY);
            if (!shift_uses(e))
                break;
        }
        for (uint32_t i = 0; i < e->nens; i++)
            run_match(e, lang, &e->ens[i], ENS_EDIT);
    }
    e->nens = 0;
}
