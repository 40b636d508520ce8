#!/usr/bin/env bash
# Install everything the tests need, start the services they need, lint, type-check and run
# the whole suite. This is the command README.md gives and .ci/run calls. Extra arguments go
# to pytest (e.g. `bash tests/run-all.sh -k inventory`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '\n== %s\n' "$*" >&2; }

log "system packages (graphviz for DOT exports, chromium for the HTML export test)"
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "need root to install: ${missing[*]} (or install them yourself)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

log "python environment (.venv)"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install --disable-pip-version-check -q -e '.[test]'

log "BigQuery emulator (.venv-bq)"
bash tests/services/install-bqemulator.sh

log "Chroma server (.venv-chroma)"
bash tests/services/install-chroma.sh

log "PostgreSQL with pgvector (.venv-pgvector)"
bash tests/services/install-pgvector.sh

log "dbt for the lineage tests (.venv-dbt)"
bash tests/services/install-dbt.sh

log "PostgreSQL on 127.0.0.1:5432"
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
    for _ in $(seq 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
fi
pg_isready -h 127.0.0.1 -p 5432

log "MariaDB on 127.0.0.1:3306"
if ! mariadb-admin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    for _ in $(seq 60); do mariadb-admin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1 && break; sleep 0.5; done
fi
mariadb-admin -h 127.0.0.1 -P 3306 -uroot ping

log "Redis (redis-server for the zone tests' private brokers) and RabbitMQ on 127.0.0.1:5672"
if ! command -v redis-server >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    rabbitmq-server -detached
    for _ in $(seq 120); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 0.5; done
fi
(exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || { echo "RabbitMQ did not start on 127.0.0.1:5672" >&2; exit 1; }

log "ruff and mypy"
.venv/bin/ruff check scanner connectors tests bench
.venv/bin/mypy scanner connectors

log "pytest"
# Two workers (CTXSCAN_TEST_WORKERS; 0 runs them in this process): most tests wait on servers
# and child processes, so two halve the suite's wall time on a 2-core machine. The tests that
# change server-wide roles run on one of them (tests/conftest.py: SERVER_ROLE_MODULES).
.venv/bin/python -m pytest -p no:cacheprovider -q -n "${CTXSCAN_TEST_WORKERS:-2}" --dist loadgroup "$@"
