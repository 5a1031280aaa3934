#!/usr/bin/env bash
# Checks the metrics, the dashboard and the alert rules with Prometheus's own tools:
#   1. promtool check config/rules on prometheus.yml and alerts.yml, promtool test rules
#      on alerts.test.yml;
#   2. a real edge on loopback: promtool check metrics on a live scrape of /metrics, and
#      the OpenMetrics form Prometheus asks for;
#   3. a real Prometheus on loopback (own config and storage, 1s scrapes, alerts.yml
#      loaded) scraping that edge while traffic.py logs clients in and asks SIC; then
#      check_queries.py runs every dashboard and alert expression through the query API.
# Needs promtool and prometheus (Debian: apt-get install prometheus), python3, curl and
# a built xmpp-edge (XMPP_EDGE_BIN, default target/debug/xmpp-edge). Everything it starts
# is stopped on exit; the whole check takes well under a minute.
set -euo pipefail
cd "$(dirname "$0")"

fail() { printf 'dashboards/check.sh: FAILED: %s\n' "$*" >&2; exit 1; }
for tool in promtool prometheus python3 curl; do
    command -v "$tool" >/dev/null || fail "$tool not found (Debian: apt-get install prometheus python3 curl)"
done
edge_bin="${XMPP_EDGE_BIN:-../target/debug/xmpp-edge}"
[ -x "$edge_bin" ] || fail "no xmpp-edge binary at $edge_bin: run cargo build --bin xmpp-edge"
edge_bin="$(cd "$(dirname "$edge_bin")" && pwd)/$(basename "$edge_bin")"

# Hard stop for everything below, in case a step hangs.
deadline=$((SECONDS + 55))
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls `curl URL` until it succeeds or the deadline passes.
wait_http() {
    local url="$1" what="$2" log="$3"
    until curl -sf -o /dev/null "$url"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$what did not come up; log:\n$(tail -20 "$log")"
        sleep 0.2
    done
}

echo "== promtool: config, rules and rule unit tests"
promtool check config prometheus.yml
promtool check rules alerts.yml
promtool test rules alerts.test.yml

echo "== a real edge on loopback"
starttls_port=$(free_port)
direct_port=$(free_port)
admin_port=$(free_port)
cat >"$work/edge.toml" <<TOML
domains = ["localhost"]
users_file = "users.toml"

[[listeners]]
kind = "starttls"
address = "127.0.0.1:$starttls_port"

[[listeners]]
kind = "direct_tls"
address = "127.0.0.1:$direct_port"

[shutdown]
grace_period = "0s"
force_after = "1s"

[log]
filter = "warn"

[admin]
address = "127.0.0.1:$admin_port"
TOML
password=check-secret
users=4
echo "$password" | "$edge_bin" --config "$work/edge.toml" user add-range 'user%d@localhost' \
    --from 1 --to "$users" --iterations 512 --password-stdin
"$edge_bin" --config "$work/edge.toml" >"$work/edge.log" 2>&1 &
pids+=($!)
admin="http://127.0.0.1:$admin_port"
wait_http "$admin/readyz" "the edge" "$work/edge.log"

echo "== promtool check metrics on a live scrape"
curl -sf "$admin/metrics" >"$work/metrics.txt"
promtool check metrics <"$work/metrics.txt" || fail "promtool check metrics found problems"
content_type=$(curl -sf -o /dev/null -w '%{content_type}' \
    -H 'Accept: application/openmetrics-text;version=1.0.0' "$admin/metrics")
[[ "$content_type" == application/openmetrics-text* ]] || fail "OpenMetrics not served: $content_type"

echo "== a real Prometheus scraping it"
prom_port=$(free_port)
cp alerts.yml "$work/alerts.yml"
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: xmpp-edge
    static_configs:
      - targets: ["127.0.0.1:$admin_port"]
YAML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
prom="http://127.0.0.1:$prom_port"
wait_http "$prom/-/ready" "Prometheus" "$work/prometheus.log"

echo "== client traffic: logins, SIC, disco, ping (8s)"
timeout 30 python3 traffic.py "$starttls_port" "$direct_port" 8 'user%d' "$password" "$users" \
    || fail "traffic failed; edge log:\n$(tail -20 "$work/edge.log")"
# Two more scrapes, so the last of the traffic is in the TSDB.
sleep 2.5

echo "== every dashboard and alert expression through $prom/api/v1/query"
python3 check_queries.py "$prom" xmpp-edge.json alerts.yml || fail "queries failed"
[ "$SECONDS" -lt "$deadline" ] || fail "took longer than the time limit"
echo "dashboards/check.sh: OK"
