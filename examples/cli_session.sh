#!/usr/bin/env bash
# A CLI session on a test node kept in a file: each command is a new process, the file keeps the state.
#
#   bash examples/cli_session.sh          # uses .venv/bin/virtabs when there is one, else virtabs on PATH
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
virtabs=virtabs
[ -x "$here/.venv/bin/virtabs" ] && virtabs="$here/.venv/bin/virtabs"
lab=$(mktemp -d)
trap 'rm -rf "$lab"' EXIT
cd "$lab"

echo '{}' > lab.json                     # an empty node
cat > vm.yaml <<'YAML'
name: vm
memory_bytes: 512M
vcpus: 1
disks: [{target: vda, path: /images/vm.qcow2, format: qcow2}]
nics: [{network: default}]
YAML
uri="test://$lab/lab.json"

"$virtabs" -c "$uri" define vm.yaml
"$virtabs" -c "$uri" start vm
"$virtabs" list --all -c "$uri"                          # global options work after the subcommand too
"$virtabs" -c "$uri" dominfo vm --json
"$virtabs" -c "$uri" blockcopy vm vda /images/vm-copy.qcow2 --wait --pivot
"$virtabs" -c "$uri" domblklist vm
"$virtabs" -c "$uri" destroy vm
"$virtabs" -c "$uri" undefine vm
"$virtabs" -c "$uri" list --all --json
