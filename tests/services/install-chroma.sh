#!/usr/bin/env bash
# Install the Chroma server (chromadb 1.5.9, which brings `chroma run`) into its own virtualenv,
# .venv-chroma at the repository root: its dependency tree (onnxruntime, tokenizers, grpc...) is
# large and pinned, so it never shares the project's venv. The tests start `chroma run` from
# here on a free loopback port (tests/connectors/vectorservers.py). Idempotent: a complete
# install is detected by a marker file and left alone.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=tests/services/_venv.sh
source "${repo_root}/tests/services/_venv.sh"
venv="${repo_root}/.venv-chroma"
version=1.5.9
marker="${venv}/.ctxscan-chromadb-${version}"

if venv_installed chroma "${marker}" "${venv}/bin/chroma"; then
    exit 0
fi

venv_pip_install "${venv}" --hide-index-warnings "chromadb==${version}"
"${venv}/bin/chroma" --help >/dev/null
touch "${marker}"
echo "chroma installed in ${venv}" >&2
