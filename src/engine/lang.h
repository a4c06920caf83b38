/* The grammars astgate parses with (TypeScript and TSX) and a small tree-sitter version shim. */
#ifndef AG_LANG_H
#define AG_LANG_H

#include <tree_sitter/api.h>

#include "util.h"

typedef enum ag_lang {
    AG_LANG_TS = 0,  /* tree-sitter-typescript "typescript" grammar */
    AG_LANG_TSX = 1, /* tree-sitter-typescript "tsx" grammar */
    AG_LANG_COUNT
} ag_lang_t;

/* The grammar for a language; never NULL. Thread-safe (static data). */
const TSLanguage *ag_lang_grammar(ag_lang_t lang);
const char *ag_lang_name(ag_lang_t lang);

/* Checks that the linked tree-sitter runtime can load both grammars (ABI). On failure fills d
 * with a message naming the grammar ABI and the runtime's supported range. */
AG_MUSTCHECK int ag_lang_check(ag_diag_t *d);

/* A new parser set to lang; caller frees it with ts_parser_delete. Aborts if the grammar does not
 * load (ag_lang_check first). timeout_us bounds each parse (0 = none). */
TSParser *ag_lang_parser_new(ag_lang_t lang, uint64_t timeout_us);

/* Named symbol for a kind name in lang, or 0 when the grammar has no such named kind. */
TSSymbol ag_lang_kind(ag_lang_t lang, ag_str_t name);
/* Field id for a field name, or 0 when unknown. */
TSFieldId ag_lang_field(ag_lang_t lang, ag_str_t name);

#endif
