#!/usr/bin/env bash
# Prints the body of one release's section of a Keep a Changelog file (the lines between its
# `## [VERSION]` heading and the next `## ` heading, blank lines at both ends dropped): the notes
# of the GitHub release the release workflow publishes.
#
#   changelog-section.sh VERSION [CHANGELOG.md]
#
# VERSION is `0.2.0` (a leading `v`, as in a tag, is dropped) or `Unreleased`. Fails, naming the
# version and the file, when the section is missing or empty: a release without notes is an error.
set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
  echo "usage: changelog-section.sh VERSION [CHANGELOG.md]" >&2
  exit 2
fi
version=${1#v}
file=${2:-CHANGELOG.md}
[ -f "$file" ] || { echo "changelog-section.sh: no file $file" >&2; exit 1; }

body=$(awk -v want="$version" '
  /^## / {
    if (found) exit
    heading = $0
    sub(/^## +\[?/, "", heading)
    sub(/[] ].*$/, "", heading)
    if (heading == want) { found = 1; next }
  }
  found { print }
  END { if (!found) exit 3 }
' "$file") || {
  echo "changelog-section.sh: $file has no section \"## [$version]\"" >&2
  exit 1
}
# drop leading blank lines (the command substitution drops the trailing ones)
body=$(printf '%s\n' "$body" | sed -e '/./,$!d')
if [ -z "$(printf '%s' "$body" | tr -d '[:space:]')" ]; then
  echo "changelog-section.sh: the section \"## [$version]\" of $file is empty" >&2
  exit 1
fi
printf '%s\n' "$body"
