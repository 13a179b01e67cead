#!/usr/bin/env bash
# Installs the real Redis clients that tests/clients/run.sh drives, on a fresh machine or again
# on one that has them: Debian's redis-tools (redis-cli) and curl if missing, redis-py 8,
# pytest and prometheus_client (whose parsers read /metrics) in a venv under target/clients-venv, and the Node.js packages pinned by
# tests/clients/node/package-lock.json (npm ci). Registries only: apt, PyPI, npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${CHORUS_CLIENTS_VENV:-target/clients-venv}

if ! command -v redis-cli >/dev/null; then
    echo "installing redis-tools (redis-cli)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-tools
fi

if ! command -v curl >/dev/null; then
    echo "installing curl (the HTTP suite)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl ca-certificates
fi

if [[ ! -x $venv/bin/python ]]; then
    if ! python3 -m venv "$venv"; then
        # Debian's python3 keeps venv (ensurepip) in a package of its own.
        rm -rf "$venv"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
        python3 -m venv "$venv"
    fi
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tests/clients/python/requirements.txt

command -v node >/dev/null && command -v npm >/dev/null || {
    echo "tests/clients needs Node.js 20 or later and npm" >&2
    exit 1
}
(cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error)

echo "clients: $(redis-cli --version), redis-py $("$venv/bin/python" -c 'import redis; print(redis.__version__)'),"\
" pytest $("$venv/bin/python" -m pytest --version 2>&1 | awk '{print $2}'),"\
" prometheus_client $("$venv/bin/python" -m pip show prometheus_client 2>/dev/null | awk '/^Version/{print $2}'), node $(node --version),"\
" $(cd tests/clients/node && node -p "['ioredis','redis','express','express-session','connect-redis'].map(p => p + ' ' + require('./node_modules/' + p + '/package.json').version).join(', ')")"
