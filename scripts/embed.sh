#!/bin/sh
# Writes, to stdout, a C file defining `const char NAME[]` (and NAME_len) with the
# text of FILE: how src/page/index.html is compiled into pgtenant (Makefile rule
# src/dashboard_page.c). Usage: embed.sh NAME FILE
set -e
name=$1
file=$2
[ -n "$name" ] && [ -r "$file" ] || { echo "usage: embed.sh NAME FILE" >&2; exit 2; }
echo "/* Generated from $file by scripts/embed.sh (make does it): do not edit. */"
echo "// clang-format off"
echo "#include <stddef.h>"
echo ""
echo "extern const char $name[];"
echo "extern const size_t ${name}_len;"
echo "const char $name[] ="
# each line a string literal: backslashes and quotes escaped, ? split from a following ?
# (no trigraphs), a tab kept as \t
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/?""/g' -e 's/	/\\t/g' -e 's/^/	"/' -e 's/$/\\n"/' "$file"
echo ";"
echo "const size_t ${name}_len = sizeof($name) - 1;"
