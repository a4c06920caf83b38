/* The grammars astgate parses with and a shim over tree-sitter runtime versions: 0.20.7 (Debian 12)
 * bounds parse time with ts_parser_set_timeout_micros, which 0.26 removed. */
#include "lang.h"

const TSLanguage *tree_sitter_typescript(void);
const TSLanguage *tree_sitter_tsx(void);

const TSLanguage *ag_lang_grammar(ag_lang_t lang)
{
    return lang == AG_LANG_TSX ? tree_sitter_tsx() : tree_sitter_typescript();
}

const char *ag_lang_name(ag_lang_t lang)
{
    return lang == AG_LANG_TSX ? "tsx" : "typescript";
}

static uint32_t abi_of(const TSLanguage *l)
{
#if TREE_SITTER_LANGUAGE_VERSION >= 15
    return ts_language_abi_version(l);
#else
    return ts_language_version(l);
#endif
}

int ag_lang_check(ag_diag_t *d)
{
    for (int i = 0; i < AG_LANG_COUNT; i++) {
        const TSLanguage *l = ag_lang_grammar((ag_lang_t)i);
        uint32_t v = abi_of(l);
        if (v < TREE_SITTER_MIN_COMPATIBLE_LANGUAGE_VERSION || v > TREE_SITTER_LANGUAGE_VERSION) {
            ag_diag_set(d, NULL, 0, 0,
                        "the %s grammar has language ABI %u, but the tree-sitter runtime loads "
                        "%u to %u",
                        ag_lang_name((ag_lang_t)i), v, TREE_SITTER_MIN_COMPATIBLE_LANGUAGE_VERSION,
                        TREE_SITTER_LANGUAGE_VERSION);
            return AG_EINVAL;
        }
    }
    return AG_OK;
}

TSParser *ag_lang_parser_new(ag_lang_t lang, uint64_t timeout_us)
{
    TSParser *p = ts_parser_new();
    AG_ASSERT(p != NULL);
    bool ok = ts_parser_set_language(p, ag_lang_grammar(lang));
    AG_ASSERT(ok);
#if TREE_SITTER_LANGUAGE_VERSION < 15
    ts_parser_set_timeout_micros(p, timeout_us);
#else
    (void)timeout_us;
#endif
    return p;
}

TSSymbol ag_lang_kind(ag_lang_t lang, ag_str_t name)
{
    return ts_language_symbol_for_name(ag_lang_grammar(lang), name.ptr, (uint32_t)name.len, true);
}

TSFieldId ag_lang_field(ag_lang_t lang, ag_str_t name)
{
    return ts_language_field_id_for_name(ag_lang_grammar(lang), name.ptr, (uint32_t)name.len);
}
