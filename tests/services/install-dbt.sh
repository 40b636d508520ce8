#!/usr/bin/env bash
# Install dbt (dbt-core 1.11.16 with the PostgreSQL adapter) into its own virtualenv,
# .venv-dbt at the repository root: the lineage tests run the real `dbt parse` to get a real
# manifest.json. dbt pins many libraries of its own, so it never shares the project's venv.
# Idempotent: a complete install is detected by a marker file and left alone.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${repo_root}/.venv-dbt"
marker="${venv}/.ctxscan-dbt-1.11.16"
packages=(dbt-core==1.11.16 dbt-postgres)

if [[ -f "${marker}" && -x "${venv}/bin/dbt" ]]; then
    echo "dbt already installed in ${venv}" >&2
    exit 0
fi

python="${PYTHON:-python3}"
if [[ -x "${repo_root}/.venv/bin/python" && -z "${PYTHON:-}" ]]; then
    python="$(readlink -f "${repo_root}/.venv/bin/python")"
fi

if [[ ! -x "${venv}/bin/python" ]]; then
    "${python}" -m venv "${venv}"
fi
"${venv}/bin/python" -m pip install --disable-pip-version-check --quiet "${packages[@]}"
DO_NOT_TRACK=1 "${venv}/bin/dbt" --version >/dev/null
touch "${marker}"
echo "dbt installed in ${venv}" >&2
