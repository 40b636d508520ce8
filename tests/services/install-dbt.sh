#!/usr/bin/env bash
# Install dbt (dbt-core 1.11.16 with the PostgreSQL adapter) into its own virtualenv,
# .venv-dbt at the repository root: the lineage tests run the real `dbt parse` to get a real
# manifest.json. dbt pins many libraries of its own, so it never shares the project's venv.
# Idempotent: a complete install is detected by a marker file and left alone.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=tests/services/_venv.sh
source "${repo_root}/tests/services/_venv.sh"
venv="${repo_root}/.venv-dbt"
marker="${venv}/.ctxscan-dbt-1.11.16"
packages=(dbt-core==1.11.16 dbt-postgres)

if venv_installed dbt "${marker}" "${venv}/bin/dbt"; then
    exit 0
fi

venv_pip_install "${venv}" "${packages[@]}"
DO_NOT_TRACK=1 "${venv}/bin/dbt" --version >/dev/null
touch "${marker}"
echo "dbt installed in ${venv}" >&2
