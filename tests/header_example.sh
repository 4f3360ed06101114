#!/usr/bin/env sh
# Prints the usage example at the top of turbodiff.h as a C file: the lines
# of its first comment indented as code (" *   "), blank ones kept.
#   header_example.sh TURBODIFF.h > example.c
set -eu
awk 'NR == 1, /^ \*\/$/ {
        if ($0 ~ /^ \*   /) { print substr($0, 6); code = 1 }
        else if ($0 == " *" && code) print ""
     }' "$1"
