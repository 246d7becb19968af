#!/usr/bin/env bash
# ctest: every #include "bilevel/..." between the rooms of src/ and include/bilevel/ points down the layering of
# tests/checks/layers.txt, except the upward includes listed with a reason in tests/checks/upward_includes.txt;
# a listed include that no longer exists fails too. Prints the count of upward includes.
# Usage: layering.sh SOURCE_DIR
set -euo pipefail
cd "${1:?usage: layering.sh SOURCE_DIR}"
declare -A level
while read -r room lvl; do level[$room]=$lvl; done < <(grep -v '^#' tests/checks/layers.txt | grep -v '^[[:space:]]*$')
room_of() {  # path below src/ or include/bilevel/ -> room
  local p=$1
  if [[ $p == */* ]]; then echo "${p%%/*}"; else p=${p##*/}; echo "${p%%.*}"; fi
}
found=()
rc=0
while IFS= read -r -d '' f; do
  rel=${f#src/}; rel=${rel#include/bilevel/}
  from=$(room_of "$rel")
  [ -n "${level[$from]:-}" ] || { echo "error: $f is in room '$from', which tests/checks/layers.txt does not list" >&2; rc=1; continue; }
  while IFS= read -r inc; do
    to=$(room_of "$inc")
    [ "$to" = "$from" ] && continue
    [ -n "${level[$to]:-}" ] || { echo "error: $f includes bilevel/$inc, room '$to' not in tests/checks/layers.txt" >&2; rc=1; continue; }
    if [ "${level[$to]}" -gt "${level[$from]}" ]; then found+=("$f -> $to"); fi
  done < <(sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"bilevel/\([^"]*\)".*|\1|p' "$f" | sort -u)
done < <(find src include/bilevel -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) -print0)
allowed=$(grep -v '^#' tests/checks/upward_includes.txt | grep -v '^[[:space:]]*$' | sed 's/:.*//' | sort -u || true)
found_sorted=$(printf '%s\n' "${found[@]}" | sort -u | grep -v '^$' || true)
while IFS= read -r e; do
  [ -z "$e" ] && continue
  grep -qxF "$e" <<< "$allowed" || { echo "error: upward include $e (layers.txt: ${e##*-> } is above ${e%% ->*}'s room); move the code down, or list it in tests/checks/upward_includes.txt with its reason" >&2; rc=1; }
done <<< "$found_sorted"
while IFS= read -r e; do
  [ -z "$e" ] && continue
  grep -qxF "$e" <<< "$found_sorted" || { echo "error: tests/checks/upward_includes.txt lists '$e', which is gone; remove the entry" >&2; rc=1; }
done <<< "$allowed"
[ $rc -ne 0 ] || echo "layering: $(grep -c . <<< "$found_sorted") upward includes, all listed with a reason"
exit $rc
