/* Code in tool calls: which tools carry code in which arguments (built-in presets for the common
 * coding agents, plus astgate.yaml's `tools:`), and the rewrite of one call's input with every
 * byte outside a changed string kept as the model wrote it. Shared by the API adapters (streamed
 * and not), `astgate rewrite --tool` and `astgate eval`. */
#ifndef AG_TOOLCODE_H
#define AG_TOOLCODE_H

#include "rewrite.h"

/* How a field holds code. */
typedef enum ag_tool_kind {
    AG_TOOL_WHOLE,          /* a whole file (Write.content, create's file_text) */
    AG_TOOL_FRAGMENT,       /* a piece of a file (Edit.new_string): rewritten when it parses on
                               its own as a sound tree, else matches are flags (reason
                               "fragment") */
    AG_TOOL_SEARCH_REPLACE, /* Cline's ------- SEARCH / ======= / +++++++ REPLACE blocks: each
                               REPLACE side as a fragment; SEARCH sides never change */
    AG_TOOL_PATCH,          /* Codex's patch envelope (*** Begin Patch ... *** End Patch): Add
                               File bodies whole, the + lines of Update hunks as fragments */
} ag_tool_kind_t;

#define AG_TOOL_MAX_FIELDS 8
#define AG_TOOL_NAME_MAX 64
#define AG_TOOL_PATH_MAX 64

typedef struct ag_tool_field {
    char path[AG_TOOL_PATH_MAX]; /* ag_jscan path in the arguments object ("content",
                                    "edits[*].new_string"); "" = the whole input of a free-text
                                    (custom) tool */
    uint8_t kind;                /* ag_tool_kind_t */
} ag_tool_field_t;

/* One tool whose calls carry code. */
typedef struct ag_tool {
    char name[AG_TOOL_NAME_MAX]; /* the tool's name on the wire, compared exactly */
    char file[AG_TOOL_PATH_MAX]; /* the argument naming the file ("file_path", "path"); its
                                    extension picks the language; "" = none: a patch names its
                                    own files, other fields hold TypeScript */
    ag_tool_field_t field[AG_TOOL_MAX_FIELDS];
    uint32_t nfields;
    bool off; /* a preset turned off in astgate.yaml (`NAME: off`) */
} ag_tool_t;

/* A set of tools (the presets, then astgate.yaml's entries over them by name). Plain value:
 * zero-initialised = empty; owned storage freed by ag_tools_dispose. */
typedef struct ag_tools {
    ag_tool_t *t;
    uint32_t n, cap;
} ag_tools_t;

/* Fills tools (which must be empty) with the built-in presets: Write, Edit, MultiEdit
 * (Claude Code); write_to_file, replace_in_file (Cline); str_replace_editor and
 * str_replace_based_edit_tool (OpenHands, Anthropic's text editor: file_text whole, new_str and
 * insert_text fragments); apply_patch ({input} or a custom tool's free text); the Mastra workspace
 * tools (mastra_workspace_write_file, mastra_workspace_edit_file, mastra_workspace_apply_patch's
 * patchText) and their older unprefixed names. */
void ag_tools_presets(ag_tools_t *tools);
/* Adds tool, or replaces the entry of the same name. */
void ag_tools_set(ag_tools_t *tools, const ag_tool_t *tool);
/* The entry for name, NULL when there is none or it is off. */
const ag_tool_t *ag_tools_find(const ag_tools_t *tools, ag_str_t name);
void ag_tools_copy(ag_tools_t *dst, const ag_tools_t *src); /* dst empty */
void ag_tools_dispose(ag_tools_t *tools);

/* How a call's input reaches us. */
typedef enum ag_tool_input {
    AG_TOOL_IN_ARGS,         /* JSON text of the arguments (function calls; Anthropic's input) */
    AG_TOOL_IN_TEXT,         /* free text: a custom tool's input (Chat custom, Responses
                                custom_tool_call); the tool's field with path "" applies */
    AG_TOOL_IN_PATCH_CREATE, /* the diff of a Responses apply_patch_call create_file: every line
                                '+' (call.file names the file); no envelope */
    AG_TOOL_IN_PATCH_UPDATE, /* the diff of an update_file: @@ hunks; no envelope */
} ag_tool_input_t;

typedef struct ag_tool_call {
    ag_str_t name; /* tool name; for the PATCH inputs, "apply_patch" */
    ag_str_t id;   /* call id (audit log); may be empty */
    ag_str_t file; /* AG_TOOL_IN_PATCH_*: the operation's path */
    int input;     /* ag_tool_input_t */
} ag_tool_call_t;

/* Where one engine result comes from, for the audit log. */
typedef struct ag_tool_site {
    const ag_tool_call_t *call;
    const char *field; /* the argument, with concrete indexes: "content", "edits[1].new_string",
                          "diff", "input"; NUL-terminated, valid during the callback */
    ag_str_t file;     /* the file the code belongs to (may be empty) */
    bool fragment;     /* the code was a fragment */
} ag_tool_site_t;

/* Called once per piece of code that a rule looked at (res->blocks > 0; events borrowed for the
 * call). A field may hold several pieces (REPLACE sides, runs of + lines): an event's block is the
 * piece's number in the field, its line the line in the field's (decoded) text, its column and
 * offset are in the piece's code (without the '+' of patch lines). */
typedef void (*ag_tool_report_fn)(void *ud, const ag_tool_site_t *site, const ag_result_t *res);

/* Rewrites the code in one call's input and appends the new input to out.
 * Code by the file's extension: .ts .tsx .js .jsx .mts .cts .mjs .cjs (parsed as a fence of that
 * name: ag_engine_rewrite_code), .md .mdx (the fenced blocks, as in a text reply); any other file
 * holds no code. Whole files are rewritten like a code block; fragments only when they parse on
 * their own as a sound tree, else what rules would change is a flag (reason "fragment"). In
 * SEARCH/REPLACE and patch fields only the REPLACE sides and + lines change (an empty SEARCH side
 * makes its REPLACE side a whole file; the last Add File body of an envelope without its
 * `*** End Patch` is a fragment), and the markers and the envelope stay valid.
 * AG_OK: out holds the input, changed or byte for byte the same (*changed tells); only the decoded
 * text of changed string tokens differs, and inside such a token only the bytes the rules changed
 * are written anew, escaped in the token's style (every other byte, key order, spacing and escape
 * kept). AG_ENOENT: the tool carries no code we know (unknown or off, no field of the call holds
 * code); out untouched, pass the input through. AG_EINVAL: AG_TOOL_IN_ARGS that are not valid
 * JSON (a slip, a cut stream); out untouched, pass through and log. AG_ETOOBIG: out's cap, or more
 * than 4096 field values in one call; out untouched. A rule with action block reports its event
 * through report (res->blocked > 0); the caller decides. e is the worker's engine (its origin must
 * be 0, as between replies). Allocates per call (buffers, the fields' offset maps). */
AG_MUSTCHECK int ag_toolcode_rewrite(ag_engine_t *e, const ag_tools_t *tools,
                                     const ag_tool_call_t *call, ag_str_t input, ag_buf_t *out,
                                     bool *changed, ag_tool_report_fn report, void *ud);

#endif
