/* transform.convert: ast-grep's case conversion of a metavariable's text (toCase, separatedBy),
 * with its word splitting reproduced as ast-grep 0.51.1 does it (checked on its CLI). */
#ifndef AG_STRCASE_H
#define AG_STRCASE_H

#include "util.h"

typedef enum ag_case {
    AG_CASE_LOWER,      /* lowerCase: the whole text */
    AG_CASE_UPPER,      /* upperCase: the whole text */
    AG_CASE_CAPITALIZE, /* capitalize: the first character upper, the rest as it is */
    AG_CASE_CAMEL,      /* camelCase: first word lower, the others capitalized, joined */
    AG_CASE_SNAKE,      /* snakeCase: words lower, joined by _ */
    AG_CASE_KEBAB,      /* kebabCase: words lower, joined by - */
    AG_CASE_PASCAL,     /* pascalCase: words capitalized, joined */
} ag_case_t;

/* separatedBy, as bits */
#define AG_SEP_DASH (1u << 0)
#define AG_SEP_DOT (1u << 1)
#define AG_SEP_SPACE (1u << 2)
#define AG_SEP_SLASH (1u << 3)
#define AG_SEP_UNDERSCORE (1u << 4)
#define AG_SEP_CASE_CHANGE (1u << 5)
#define AG_SEP_ALL 0x3fu /* the default when separatedBy is absent */

/* The toCase / separatedBy spellings of ast-grep; -1 when unknown. */
int ag_case_parse(ag_str_t name);
int ag_sep_parse(ag_str_t name);

/* Appends `in` converted to case `to` to out, splitting words at the separators in `seps` (a
 * character of a listed kind ends a word and is dropped; AG_SEP_CASE_CHANGE also splits
 * fooBar -> foo|Bar, HTTPServer -> HTTP|Server, a1B2c -> a1B|2c as ast-grep does; empty words are
 * dropped). Upper/lower case follow Unicode (C.UTF-8's tables; ASCII only when that locale is
 * missing); invalid UTF-8 bytes are copied as they are. AG_ETOOBIG past out's maximum. */
AG_MUSTCHECK int ag_case_convert(ag_str_t in, ag_case_t to, unsigned seps, ag_buf_t *out);

#endif
