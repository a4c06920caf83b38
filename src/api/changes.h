/* Changes to one JSON text (a body or an event's data), collected and then applied in one
 * splice: the text of a string token replaced by minimal edits (its other bytes and escapes kept),
 * or a token replaced by raw bytes. Shared by the API adapters. */
#ifndef AG_CHANGES_H
#define AG_CHANGES_H

#include "jsonscan.h"
#include "rewrite.h"

typedef struct ag_change {
    size_t off, len; /* the token in the JSON text */
    size_t *map;     /* ag_jscan_decode's map (owned); NULL: raw replacement */
    size_t map_len;
    size_t first, nedits;    /* its edits: ag_changes_t.e[first, first + nedits) */
    size_t raw_off, raw_len; /* raw replacement bytes, in ag_changes_t.texts */
} ag_change_t;

typedef struct ag_changes {
    ag_change_t *c;
    size_t n, cap;
    ag_jscan_edit_t *e; /* text.ptr holds an offset into texts until applied */
    size_t ne, ecap;
    ag_jscan_splice_t *sp;
    size_t spcap;
    ag_buf_t texts; /* replacement texts */
    ag_buf_t dec;   /* scratch: a decoded token */
} ag_changes_t;

void ag_changes_init(ag_changes_t *s);
/* Forgets the changes (keeps the storage). */
void ag_changes_reset(ag_changes_t *s);
void ag_changes_dispose(ag_changes_t *s);
ag_change_t *ag_changes_add(ag_changes_t *s, size_t off, size_t len);
AG_MUSTCHECK int ag_changes_edit(ag_changes_t *s, ag_change_t *c, size_t start, size_t end,
                                 ag_str_t text);
/* The string token m gets the decoded contents text, as one edit over the span that differs. */
AG_MUSTCHECK int ag_changes_text(ag_changes_t *s, ag_str_t json, const ag_jscan_match_t *m,
                                 ag_str_t text);
/* Raw replacement of a token (e.g. a renumbered sequence_number). */
AG_MUSTCHECK int ag_changes_raw(ag_changes_t *s, const ag_jscan_match_t *m, ag_str_t raw);
/* The engine's applied edits (res) to the string token m; rewritten is the whole new text, used
 * when the edits do not fit the token. */
AG_MUSTCHECK int ag_changes_result(ag_changes_t *s, ag_str_t json, const ag_jscan_match_t *m,
                                   const ag_result_t *res, ag_str_t rewritten);
/* Appends json with every change applied. */
AG_MUSTCHECK int ag_changes_apply(ag_changes_t *s, ag_str_t json, ag_buf_t *out);

#endif
