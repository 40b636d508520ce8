#!/usr/bin/env bash
# Install the Chroma server (chromadb 1.5.9, which brings `chroma run`) into its own virtualenv,
# .venv-chroma at the repository root: its dependency tree (onnxruntime, tokenizers, grpc...) is
# large and pinned, so it never shares the project's venv. The tests start `chroma run` from
# here on a free loopback port (tests/connectors/vectorservers.py). Idempotent: a complete
# install is detected by a marker file and left alone.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${repo_root}/.venv-chroma"
version=1.5.9
marker="${venv}/.ctxscan-chromadb-${version}"

if [[ -f "${marker}" && -x "${venv}/bin/chroma" ]]; then
    echo "chroma already installed in ${venv}" >&2
    exit 0
fi

python="${PYTHON:-python3}"
if [[ -x "${repo_root}/.venv/bin/python" && -z "${PYTHON:-}" ]]; then
    python="$(readlink -f "${repo_root}/.venv/bin/python")"
fi

if [[ ! -x "${venv}/bin/python" ]]; then
    "${python}" -m venv "${venv}"
fi
"${venv}/bin/python" -m pip install --disable-pip-version-check --quiet "chromadb==${version}" \
    2> >(grep -v "^WARNING: Location" >&2)
"${venv}/bin/chroma" --help >/dev/null
touch "${marker}"
echo "chroma installed in ${venv}" >&2
