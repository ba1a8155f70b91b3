#!/usr/bin/env bash
# End to end, durable: REST POST /v1/messages -> gateway (SQLite, WAL, synchronous=FULL)
# -> SMPP client -> an SMSC: our simulator (`sim`) or the npm `smpp` sink (`node`).
# Prints messages/s from the first POST to the last message `sent`, and accept-to-sent
# latency percentiles read from the store (created_at to the `sent` event).
#
#   cargo build --release -p switchboard -p switchboard-bench -p switchboard-smpp --bins
#   tests/peers/smpp/bench-client.sh sim|node [MESSAGES=50000] [CLIENTS=50] [BINDS=1] [WINDOW=100] [receipts]
# SWITCHBOARD_BIN=path runs another gateway binary (to compare two builds in turn).
set -euo pipefail
cd "$(dirname "$0")/../../.."

smsc=${1:-sim}
n=${2:-50000}
clients=${3:-50}
binds=${4:-1}
window=${5:-100}
receipts=${6:-}
peers=${SWITCHBOARD_PEERS:-$HOME/.cache/switchboard/peers}
work=$(mktemp -d /tmp/sb-smpp-bench.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
smsc_port=$(free_port)
http_port=$(free_port)

case "$smsc" in
    sim)
        r=off; [ "$receipts" = receipts ] && r=on
        target/release/smsc-sim --listen "127.0.0.1:$smsc_port" --receipts "$r" >"$work/smsc.log" 2>&1 &
        ;;
    node)
        extra=(); [ "$receipts" = receipts ] && extra=(--receipts)
        NODE_PATH="$peers/node/node_modules" node tests/peers/smpp/sink.js "$smsc_port" "${extra[@]}" >"$work/smsc.log" 2>&1 &
        ;;
    *) echo "usage: $0 sim|node [messages] [clients] [binds] [window] [receipts]" >&2; exit 2 ;;
esac
pids+=($!)
until grep -q "listening on" "$work/smsc.log"; do sleep 0.1; done

cat >"$work/sb.toml" <<TOML
[http]
listen = "127.0.0.1:$http_port"
[database]
url = "sqlite://$work/data/sb.db"
[log]
level = "warn"
[[tenants]]
id = "bench"
api_keys = ["sk_bench_key_123"]
[[smpp.connectors]]
name = "bench-smsc"
address = "127.0.0.1:$smsc_port"
system_id = "bench"
password = "bench"
tenant = "bench"
binds = $binds
window = $window
TOML
"${SWITCHBOARD_BIN:-target/release/switchboard}" serve --config "$work/sb.toml" >"$work/gateway.log" 2>&1 &
gateway=$!
pids+=($gateway)
until grep -q "REST API listening" "$work/gateway.log"; do sleep 0.1; done
until curl -sf -H "Authorization: Bearer sk_bench_key_123" "http://127.0.0.1:$http_port/v1/connectors" | grep -q '"bound"'; do sleep 0.1; done
rss_idle=$(ps -o rss= -p "$gateway")

# The gateway's CPU time (user + system, in clock ticks) from /proc.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$gateway/stat"; }
cpu_start=$(cpu_ticks)
start=$(date +%s.%N)
target/release/switchboard-bench --url "http://127.0.0.1:$http_port" --api-key sk_bench_key_123 \
    -c "$clients" -n "$n" --warmup 0 | sed 's/^/rest: /'
db="$work/data/sb.db"
peak=0
while :; do
    done_count=$(sqlite3 "$db" "SELECT count(*) FROM messages WHERE status IN ('sent','delivered')" 2>/dev/null || echo 0)
    rss=$(ps -o rss= -p "$gateway"); [ "$rss" -gt "$peak" ] && peak=$rss
    [ "$done_count" -ge "$n" ] && break
    sleep 0.05
done
end=$(date +%s.%N)
cpu_end=$(cpu_ticks)
if [ "$receipts" = receipts ]; then
    until [ "$(sqlite3 "$db" "SELECT count(*) FROM messages WHERE status = 'delivered'")" -ge "$n" ]; do sleep 0.1; done
    delivered_end=$(date +%s.%N)
fi

echo "smsc          $smsc (binds $binds, window $window${receipts:+, receipts})"
echo "messages      $n"
awk -v n="$n" -v s="$start" -v e="$end" 'BEGIN { printf "sent/s        %.0f (%.2f s from the first POST to the last sent)\n", n/(e-s), e-s }'
[ -n "${delivered_end:-}" ] && awk -v n="$n" -v s="$start" -v e="$delivered_end" 'BEGIN { printf "delivered/s   %.0f\n", n/(e-s) }'
sqlite3 "$db" "
WITH l AS (SELECT e.at - m.created_at AS d FROM messages m JOIN message_events e ON e.message_id = m.id AND e.status = 'sent'),
     c AS (SELECT count(*) AS n FROM l)
SELECT printf('accept->sent  p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms',
  (SELECT d FROM l ORDER BY d LIMIT 1 OFFSET (SELECT n*50/100 FROM c)) / 1000.0,
  (SELECT d FROM l ORDER BY d LIMIT 1 OFFSET (SELECT n*90/100 FROM c)) / 1000.0,
  (SELECT d FROM l ORDER BY d LIMIT 1 OFFSET (SELECT n*99/100 FROM c)) / 1000.0,
  (SELECT max(d) FROM l) / 1000.0);"
awk -v n="$n" -v t="$((cpu_end - cpu_start))" -v hz="$(getconf CLK_TCK)" -v s="$start" -v e="$end" \
    'BEGIN { printf "gateway CPU   %.1f µs per message (%.2f cores over the run)\n", t / hz * 1e6 / n, t / hz / (e - s) }'
echo "gateway RSS   idle ${rss_idle} KiB, peak ${peak} KiB"
tail -n 3 "$work/smsc.log" | sed 's/^/smsc: /'
rm -rf "$work"
