#!/usr/bin/env bash
# ctest: no host loop over raw tensor memory outside the kernel entry points. Every file of src/quant, src/rules,
# src/energy, src/train and src/optim that calls data_ptr must be in tests/checks/host_loops_allowlist.txt with a reason,
# and every file listed there must still call it (a stale entry fails too).
# Usage: device_generic.sh SOURCE_DIR
set -euo pipefail
cd "${1:?usage: device_generic.sh SOURCE_DIR}"
list=tests/checks/host_loops_allowlist.txt
allowed=$(grep -v '^#' "$list" | grep -v '^[[:space:]]*$' | cut -d: -f1 | sort -u)
found=$(grep -rl --include='*.cpp' --include='*.h' 'data_ptr' src/quant src/rules src/energy src/train src/optim | sort -u || true)
rc=0
for f in $found; do
  if ! grep -qx "$f" <<< "$allowed"; then
    echo "error: $f takes raw tensor pointers (data_ptr) outside the kernel entries:" >&2
    grep -n 'data_ptr' "$f" | sed 's/^/  /' >&2
    echo "  move the loop into src/kernels (an entry with a CPU twin and a CUDA kernel), or add $f to $list with its reason" >&2
    rc=1
  fi
done
for f in $allowed; do
  if ! grep -qx "$f" <<< "$found"; then
    echo "error: $list lists $f, which no longer calls data_ptr; remove the entry" >&2
    rc=1
  fi
done
[ $rc -ne 0 ] || echo "device-generic: $(wc -w <<< "$found") allow-listed files take raw pointers, none other does"
exit $rc
