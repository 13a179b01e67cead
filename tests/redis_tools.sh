# Shared by the benchmark scripts that run next to Redis (sourced, not run).

# Installs redis-server and redis-tools from Debian's packages when they are missing.
ensure_redis_tools() {
  if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "installing redis-server and redis-tools from Debian's packages" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
  fi
}

# Prints a TCP port on 127.0.0.1 nobody listens on (a connection attempt is refused). Another
# process could take it before the caller binds it; the caller's readiness check then fails.
free_port() {
  local candidate
  for _ in $(seq 1 100); do
    candidate=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "no free port found" >&2
  return 1
}
