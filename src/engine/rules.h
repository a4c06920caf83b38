/* Rule files: ast-grep rule YAML (multi-document) plus astgate's `metadata.astgate` extension,
 * validated and compiled into rule.h structures for each grammar a rule applies to. */
#ifndef AG_RULES_H
#define AG_RULES_H

#include "rule.h"

typedef struct ag_rules ag_rules_t;

/* Loads and compiles every rule in the given files (in order; ids must be unique across them).
 * On any error nothing is returned: *out is left untouched, d holds file:line:col and the cause,
 * and the result is AG_EINVAL (bad rule) or AG_EIO (unreadable file). */
AG_MUSTCHECK int ag_rules_load_files(const char *const *paths, uint32_t npaths, ag_rules_t **out,
                                     ag_diag_t *d);
/* Same, from memory; name is used in diagnostics. */
AG_MUSTCHECK int ag_rules_load_mem(ag_str_t text, const char *name, ag_rules_t **out, ag_diag_t *d);

/* ---- parameters (metadata.astgate.params) ----
 * A rule document declares parameters, `NAME: {type, default, pattern}`; they belong to its file,
 * and every value of the file's rules (`message`, `fix`, an ensure's `string`/`code`, `import`)
 * may use them as `${{ params.NAME }}`, replaced once at load time. Values come from, last wins:
 * the declaration's default, the file's `set` (astgate.yaml), the global sets (--set). */
#define AG_RULES_MAX_PARAMS 32 /* per file */

/* One NAME=VALUE given for rule files. */
typedef struct ag_rules_set {
    const char *name;  /* NUL-terminated */
    const char *value; /* NUL-terminated */
    const char *file;  /* where it was given, for messages; NULL = the command line (--set) */
    unsigned line, col;
} ag_rules_set_t;

/* One rule file and the values set for it. */
typedef struct ag_rules_src {
    const char *path;           /* the file to read; the name in diagnostics when text.ptr is set */
    ag_str_t text;              /* ptr NULL: read `path` */
    const ag_rules_set_t *sets; /* borrowed: each must name a parameter the file declares */
    uint32_t nsets;
    bool utils; /* a file of sgconfig.yml's utilDirs: documents of `id`, `language` and `rule`
                   that every rule of the set may use through `matches` (after its own utils) */
} ag_rules_src_t;

/* As ag_rules_load_files, with parameter values: srcs[i].sets for file i, then `global` (the
 * command line's) for every file that declares the name. Errors (AG_EINVAL, d at the place that
 * is wrong): a set naming a parameter the file declares not (`global`: that no file declares), a
 * value of the wrong type or not matching the pattern, a parameter without default that nothing
 * sets, a `${{ params.NAME }}` of an undeclared NAME. Everything is borrowed for the call. */
AG_MUSTCHECK int ag_rules_load_srcs(const ag_rules_src_t *srcs, uint32_t n,
                                    const ag_rules_set_t *global, uint32_t nglobal,
                                    ag_rules_t **out, ag_diag_t *d);
/* Parses "NAME=VALUE" (a --set argument) into *out, pointing into arg (NAME must be an
 * identifier; AG_EINVAL otherwise, d says why). */
AG_MUSTCHECK int ag_rules_parse_set(const char *arg, char *name, size_t name_cap,
                                    ag_rules_set_t *out, ag_diag_t *d);
/* Prints, one line each (file:line:col: warning: ...), what the files hold that ast-grep ignores
 * and astgate ignores too (an unknown key inside a relational rule). */
void ag_rules_print_warnings(const ag_rules_t *r, FILE *f);
/* Parameters rule i declares or uses, and each one's value in force (strings owned by r). */
uint32_t ag_rules_rule_nparams(const ag_rules_t *r, uint32_t i);
void ag_rules_rule_param(const ag_rules_t *r, uint32_t i, uint32_t j, const char **name,
                         const char **value);

/* ---- hints (metadata.astgate.hint: {text, example}) ----
 * A rule may say, for the model that writes the code, what it wants: `text` (a sentence or two)
 * and `example` (code that complies). Both may use `${{ params.NAME }}`. Loader errors: a hint
 * that is not a mapping, an unknown key, no `text`, a value that is not a string, an empty text,
 * more than AG_RULES_MAX_HINT bytes once parameters are replaced. */
#define AG_RULES_MAX_HINT 4096 /* bytes of a hint's text, and of its example */

/* Rule i's hint (views into r, valid while r lives; example.len 0 = none); false when the rule
 * has none. */
bool ag_rules_rule_hint(const ag_rules_t *r, uint32_t i, ag_str_t *text, ag_str_t *example);
/* Appends the combined hint of every rule that has one, in load order (files, then documents),
 * a hint equal to an earlier one given once:
 *   astgate rules for generated code:
 *   - <text>
 *   ```ts
 *   <example, trailing newlines dropped>
 *   ```
 *   - <next text> ...
 * Nothing is appended when no rule has a hint. *nrules (when not NULL) = hints written.
 * AG_ETOOBIG past out->max, out left as it was. Thread-safe (r is read only). */
AG_MUSTCHECK int ag_rules_hint(const ag_rules_t *r, ag_buf_t *out, uint32_t *nrules);
void ag_rules_free(ag_rules_t *r);
/* Number of rules loaded. */
uint32_t ag_rules_count(const ag_rules_t *r);
/* Id of rule i (0 <= i < ag_rules_count). */
const char *ag_rules_rule_id(const ag_rules_t *r, uint32_t i);

#endif
