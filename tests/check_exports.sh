#!/usr/bin/env bash
# The shared library exports exactly the functions turbodiff.h declares:
# every process that loads FFmpeg loads libturbodiff too, so an internal
# symbol exported there could bind to, or be bound by, another library's.
#   check_exports.sh LIBTURBODIFF.so TURBODIFF.h [CC]
# Fails naming each exported symbol the header does not declare and each
# declared function the library does not export.
set -euo pipefail
lib=$1 header=$2 cc=${3:-cc}

# The header's function declarations: identifiers written right before
# '(' (the header's style), once the preprocessor has removed comments (the
# usage example calls functions too) and TD_API has expanded, in the lines
# that come from turbodiff.h itself, not from the system headers it
# includes. Function pointer typedefs, (*td_log_fn)(...), have ')' there.
declared=$("$cc" -E -DTD_SHARED -x c "$header" |
    awk '/^# [0-9]+ "/ { mine = ($3 ~ /turbodiff\.h"$/); next } mine' |
    grep -oE '\b[A-Za-z_][A-Za-z0-9_]*\(' |
    grep -vE '^(__attribute__|visibility)\($' | tr -d '(' | sort -u)
[ -n "$declared" ] || { echo "check_exports: no function found in $header" >&2; exit 1; }

exported=$(nm -D --defined-only "$lib" | awk '{ print $NF }' | sort -u)

extra=$(comm -13 <(echo "$declared") <(echo "$exported"))
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
status=0
if [ -n "$extra" ]; then
    echo "check_exports: $lib exports $(echo "$extra" | wc -l) symbol(s) turbodiff.h does not declare:" >&2
    echo "$extra" | sed 's/^/  /' >&2
    status=1
fi
if [ -n "$missing" ]; then
    echo "check_exports: $lib does not export these functions of turbodiff.h (TD_API missing?):" >&2
    echo "$missing" | sed 's/^/  /' >&2
    status=1
fi
[ $status -ne 0 ] || echo "check_exports: $(echo "$exported" | wc -l) symbols, all declared in turbodiff.h"
exit $status
