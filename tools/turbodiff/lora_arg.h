/* The CLI's --lora FILE[=SCALE] option, shared by generate, dit-forward,
 * t2v, i2v and lora-merge. */
#ifndef TD_TOOLS_LORA_ARG_H
#define TD_TOOLS_LORA_ARG_H

#include "turbodiff.h"

#define TD_CLI_MAX_LORAS 16

typedef struct lora_args {
    td_lora l[TD_CLI_MAX_LORAS];
    int n;
} lora_args;

/* Add "FILE" (scale 1) or "FILE=SCALE" to a; a message on stderr naming
 * cmd and 0 when the value is bad or there are too many. The text after
 * the last '=' is the scale only if it is a whole number, so a path that
 * holds '=' still works alone. */
int lora_arg_add(lora_args *a, const char *cmd, char *value);

#endif
