#!/usr/bin/env bash
# Install the BigQuery emulator (bqemulator 1.4.0) into its own virtualenv, .venv-bq at the
# repository root. It pins DuckDB and brings a pytest plugin, so it never shares the
# project's venv. Idempotent: a complete install is detected by a marker file and left alone.
#
# Known facts (shared/notes/services.md): it starts offline only with duckdb==1.5.5, the
# PyPI wheel duckdb-extension-spatial==1.5.5 imported once through duckdb-extensions, and numpy.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=tests/services/_venv.sh
source "${repo_root}/tests/services/_venv.sh"
venv="${repo_root}/.venv-bq"
marker="${venv}/.ctxscan-bqemulator-1.4.0"
packages=(bqemulator==1.4.0 duckdb==1.5.5 duckdb-extension-spatial==1.5.5 duckdb-extensions==1.5.5 numpy)

if venv_installed bqemulator "${marker}" "${venv}/bin/bqemulator"; then
    exit 0
fi

venv_pip_install "${venv}" "${packages[@]}"
# Loads the spatial extension from the wheel once, so the emulator never downloads it.
"${venv}/bin/python" -c "from duckdb_extensions import import_extension; import_extension('spatial')"
"${venv}/bin/bqemulator" --help >/dev/null
touch "${marker}"
echo "bqemulator installed in ${venv}" >&2
