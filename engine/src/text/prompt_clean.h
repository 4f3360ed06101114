/*
 * Wan's prompt cleaning before tokenizing (wan/modules/tokenizers.py,
 * clean='whitespace'): basic_clean = ftfy.fix_text, html.unescape twice,
 * strip; then whitespace runs collapsed to one space and stripped.
 * Replicated: HTML unescaping of numeric entities (&#NNN; &#xHH;) and of
 * the named entities prompts carry (amp lt gt quot apos nbsp and a few
 * typographic ones), twice, and the whitespace rules (Python's str.isspace
 * set for ASCII and the common Unicode spaces). Not replicated: ftfy's
 * mojibake repair, which needs its tables.
 */
#ifndef TD_TEXT_PROMPT_CLEAN_H
#define TD_TEXT_PROMPT_CLEAN_H

#include "core/ctx.h"

/* A new NUL-terminated string in *out (the caller frees it). */
int td_prompt_clean(td_ctx *ctx, const char *text, char **out);

#endif
