#!/usr/bin/env bash
# Run the contract kit against the example third-party driver (contrib/virtabs-example, URI example:///)
# and print its capability x result table. Needs the kit's extra: pip install 'virtabs[testing]'
# (scripts/bootstrap installs it).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
contract=virtabs-contract
[ -x "$here/.venv/bin/virtabs-contract" ] && contract="$here/.venv/bin/virtabs-contract"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$out"   # the kit's pytest run writes nothing into the repository
"$contract" --uri example:/// --output "$out/example.md"
grep -c '^| ' "$out/example.md" >/dev/null   # the table was written
