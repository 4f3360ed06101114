#include "lora_arg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lora_arg_add(lora_args *a, const char *cmd, char *value)
{
    char *eq = strrchr(value, '=');
    double scale = 1.0;

    if (a->n == TD_CLI_MAX_LORAS) {
        fprintf(stderr, "turbodiff %s: at most %d --lora options\n", cmd, TD_CLI_MAX_LORAS);
        return 0;
    }
    if (eq && eq[1]) {
        char *end;
        double s = strtod(eq + 1, &end);
        if (!*end) {
            if (!isfinite(s)) {
                fprintf(stderr, "turbodiff %s: --lora %s: the scale must be a finite number\n", cmd, value);
                return 0;
            }
            *eq = '\0';
            scale = s;
        }
    }
    if (!*value) {
        fprintf(stderr, "turbodiff %s: --lora needs FILE or FILE=SCALE\n", cmd);
        return 0;
    }
    a->l[a->n].path = value;
    a->l[a->n].scale = scale;
    a->n++;
    return 1;
}
