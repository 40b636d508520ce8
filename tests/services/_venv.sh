# Shared by the tests/services/install-*.sh scripts (sourced, not run): each service lives in
# its own virtualenv at the repository root, created once and recognised by a marker file.
# The caller sets `repo_root` and `set -euo pipefail` before sourcing this.

# venv_installed LABEL MARKER [EXECUTABLE]: true (and says so) when MARKER exists and, if
# given, EXECUTABLE is runnable: a complete install is left alone.
venv_installed() {
    local label="$1" marker="$2" executable="${3:-}"
    if [[ -f "${marker}" && ( -z "${executable}" || -x "${executable}" ) ]]; then
        echo "${label} already installed in $(dirname "${marker}")" >&2
        return 0
    fi
    return 1
}

# venv_pip_install VENV [--hide-index-warnings] PACKAGE...: create VENV if it has no python yet
# (with the project venv's interpreter version, else $PYTHON or python3; the venv itself is not
# shared), then pip install the pinned PACKAGEs into it. --hide-index-warnings drops pip's
# "WARNING: Location ..." lines about missing local index folders from stderr.
venv_pip_install() {
    local venv="$1"
    shift
    local hide=0
    if [[ "${1:-}" == "--hide-index-warnings" ]]; then
        hide=1
        shift
    fi
    local python="${PYTHON:-python3}"
    if [[ -x "${repo_root}/.venv/bin/python" && -z "${PYTHON:-}" ]]; then
        python="$(readlink -f "${repo_root}/.venv/bin/python")"
    fi
    if [[ ! -x "${venv}/bin/python" ]]; then
        "${python}" -m venv "${venv}"
    fi
    if (( hide )); then
        "${venv}/bin/python" -m pip install --disable-pip-version-check --quiet "$@" \
            2> >(grep -v "^WARNING: Location" >&2)
    else
        "${venv}/bin/python" -m pip install --disable-pip-version-check --quiet "$@"
    fi
}
