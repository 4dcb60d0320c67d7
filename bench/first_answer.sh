#!/usr/bin/env bash
# A new user's first wait: clone, `make run`, time until /core/healthz answers.
#
#   bench/first_answer.sh [REPO] [PORT]     (defaults: this checkout, 18731)
#
# Set UV_CACHE_DIR to an empty directory for a cold installer cache. The
# clone goes to a temporary directory, removed at the end.
set -u
src=${1:-$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)}
port=${2:-18731}
dest=$(mktemp -d)/clone
git clone -q "$src" "$dest"
cd "$dest" || exit 1
start=$(date +%s.%N)
setsid make run PORT="$port" >"$dest.log" 2>&1 &
pid=$!
until curl -sf "http://127.0.0.1:$port/core/healthz" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "make run stopped before answering; its output:" >&2
        tail -20 "$dest.log" >&2
        exit 1
    fi
    sleep 0.2
done
end=$(date +%s.%N)
printf 'first answer after %.1f s (load average %s)\n' \
    "$(echo "$end - $start" | bc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
kill -- -"$pid"
wait "$pid" 2>/dev/null
rm -rf "$(dirname "$dest")"
