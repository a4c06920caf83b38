/* The tools whose calls carry code: the built-in presets (Claude Code, Cline, OpenHands,
 * Anthropic's text editor, Codex, Mastra's workspace) and the entries astgate.yaml adds. */
#include "toolcode.h"

typedef struct preset {
    const char *name;
    const char *file;
    struct {
        const char *path;
        uint8_t kind;
    } f[4];
} preset_t;

static const preset_t PRESETS[] = {
    /* Claude Code */
    {"Write", "file_path", {{"content", AG_TOOL_WHOLE}}},
    {"Edit", "file_path", {{"new_string", AG_TOOL_FRAGMENT}}},
    {"MultiEdit", "file_path", {{"edits[*].new_string", AG_TOOL_FRAGMENT}}},
    /* Cline */
    {"write_to_file", "path", {{"content", AG_TOOL_WHOLE}}},
    {"replace_in_file", "path", {{"diff", AG_TOOL_SEARCH_REPLACE}}},
    /* OpenHands; Anthropic's text editor (insert_text: what claude-opus-4-5 was seen to send) */
    {"str_replace_editor",
     "path",
     {{"file_text", AG_TOOL_WHOLE},
      {"new_str", AG_TOOL_FRAGMENT},
      {"insert_text", AG_TOOL_FRAGMENT}}},
    {"str_replace_based_edit_tool",
     "path",
     {{"file_text", AG_TOOL_WHOLE},
      {"new_str", AG_TOOL_FRAGMENT},
      {"insert_text", AG_TOOL_FRAGMENT}}},
    /* Codex: the JSON function form {input}, and the custom (free-text) form */
    {"apply_patch", "", {{"input", AG_TOOL_PATCH}, {"", AG_TOOL_PATCH}}},
    /* Mastra's workspace tools, and the names older releases used */
    {"mastra_workspace_write_file", "path", {{"content", AG_TOOL_WHOLE}}},
    {"mastra_workspace_edit_file", "path", {{"new_string", AG_TOOL_FRAGMENT}}},
    {"mastra_workspace_apply_patch", "", {{"patchText", AG_TOOL_PATCH}}},
    {"workspace_write_file", "path", {{"content", AG_TOOL_WHOLE}}},
    {"workspace_edit_file", "path", {{"new_string", AG_TOOL_FRAGMENT}}},
};

void ag_tools_presets(ag_tools_t *tools)
{
    for (size_t i = 0; i < sizeof(PRESETS) / sizeof(PRESETS[0]); i++) {
        const preset_t *p = &PRESETS[i];
        ag_tool_t t;
        memset(&t, 0, sizeof(t));
        snprintf(t.name, sizeof(t.name), "%s", p->name);
        snprintf(t.file, sizeof(t.file), "%s", p->file);
        for (int k = 0; k < 4 && p->f[k].path; k++) {
            snprintf(t.field[k].path, sizeof(t.field[k].path), "%s", p->f[k].path);
            t.field[k].kind = p->f[k].kind;
            t.nfields++;
        }
        ag_tools_set(tools, &t);
    }
}

void ag_tools_set(ag_tools_t *tools, const ag_tool_t *tool)
{
    for (uint32_t i = 0; i < tools->n; i++)
        if (strcmp(tools->t[i].name, tool->name) == 0) {
            tools->t[i] = *tool;
            return;
        }
    if (tools->n == tools->cap) {
        tools->cap = tools->cap ? tools->cap * 2 : 16;
        tools->t = ag_xrealloc(tools->t, tools->cap * sizeof(*tools->t));
    }
    tools->t[tools->n++] = *tool;
}

const ag_tool_t *ag_tools_find(const ag_tools_t *tools, ag_str_t name)
{
    if (tools == NULL)
        return NULL;
    for (uint32_t i = 0; i < tools->n; i++)
        if (ag_str_eqc(name, tools->t[i].name))
            return tools->t[i].off ? NULL : &tools->t[i];
    return NULL;
}

void ag_tools_copy(ag_tools_t *dst, const ag_tools_t *src)
{
    for (uint32_t i = 0; i < src->n; i++)
        ag_tools_set(dst, &src->t[i]);
}

void ag_tools_dispose(ag_tools_t *tools)
{
    free(tools->t);
    memset(tools, 0, sizeof(*tools));
}
