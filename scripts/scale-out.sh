#!/usr/bin/env bash
# Scale-out of NDXP (docs/scale-out.md): two `ndxp-gateway` processes and
# two `ndxp-node` processes of one member (the provider), sharing one
# PostgreSQL database, behind HAProxy; a consumer node calls the provider
# through the balancer.
#
# Everything is created from nothing in a fresh directory (PKI, keys,
# configuration files, schemas). The script prints what it started and
# keeps it running until Ctrl-C (or SIGTERM); with --once it makes one call
# through each balancer, archives and verifies the provider's shared message
# log, and stops. On exit it stops every process it started and drops the
# schemas it created (unless --keep-db).
#
# The test ndxp-gateway/tests/scale_out.rs drives this same script.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/scale-out.sh [options]
  --dir D              working directory, wiped first (default target/ndxp-scale-out)
  --bin DIR            where ndxp-gateway, ndxp-node and citizen-registry are
                       (default: build them with cargo into target/debug)
  --pg-url URL         the PostgreSQL database to use (default $NDXP_TEST_POSTGRES_URL,
                       else postgres://postgres@127.0.0.1:5432/postgres)
  --schema-prefix P    prefix of the three schemas created in it: P_registry,
                       P_gateway_log, P_node_log (default scale_<time>_<pid>; must not exist)
  --keep-db            keep the schemas when stopping
  --port-base N        first of the local ports used, N .. N+62 (default 8500)
  --once               one call through each balancer, archive and verify the
                       provider's log, then stop (exit 0 only if all of it worked)
  -h, --help           this text
EOF
}

root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/target/ndxp-scale-out"
bin=""
pg_url="${NDXP_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
prefix="scale_$(date +%s)_$$"
keep_db=false
base=8500
once=false
while (($#)); do
  case "$1" in
    --dir) dir=${2:?--dir needs a value}; shift 2 ;;
    --bin) bin=${2:?--bin needs a value}; shift 2 ;;
    --pg-url) pg_url=${2:?--pg-url needs a value}; shift 2 ;;
    --schema-prefix) prefix=${2:?--schema-prefix needs a value}; shift 2 ;;
    --keep-db) keep_db=true; shift ;;
    --port-base) base=${2:?--port-base needs a value}; shift 2 ;;
    --once) once=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "scale-out: unknown option $1" >&2; usage >&2; exit 64 ;;
  esac
done
fail() { echo "scale-out: error: $*" >&2; exit 1; }
[[ $prefix =~ ^[a-z_][a-z0-9_]{0,40}$ ]] \
  || { echo "scale-out: --schema-prefix must be lower-case letters, digits and _ (got $prefix)" >&2; exit 64; }
[[ $base =~ ^[0-9]+$ ]] && ((base >= 1024 && base <= 65400)) \
  || { echo "scale-out: --port-base must be a number from 1024 to 65400" >&2; exit 64; }

# The tools this needs besides our binaries. `.ci/run` installs them.
for tool in haproxy psql curl; do
  command -v "$tool" >/dev/null 2>&1 \
    || fail "$tool is not installed (bash .ci/run installs it; by hand: apt-get install haproxy postgresql-client curl)"
done

# --- ports -------------------------------------------------------------------
pki_port=$base                 # OCSP + TSA
backend_port=$((base + 1))     # the sample provider backend
lb_mgmt=$((base + 10))         # HAProxy: management API + /globalconf (HTTP)
lb_gw=$((base + 11))           # HAProxy: central gateway (HTTP)
lb_peer=$((base + 12))         # HAProxy: provider's peer port (TCP, TLS passes through)
lb_stats=$((base + 13))        # HAProxy: statistics page
gw_ports() { local b=$((base + 20 + 10 * $1)); echo "$b $((b + 1)) $((b + 2))"; } # mgmt admin gateway
node_ports() { local b=$((base + 40 + 10 * $1)); echo "$b $((b + 1)) $((b + 2))"; } # client peer admin
read -r gwa_mgmt gwa_admin gwa_gw < <(gw_ports 0)
read -r gwb_mgmt gwb_admin gwb_gw < <(gw_ports 1)
read -r h29a_client h29a_peer h29a_admin < <(node_ports 0)
read -r h29b_client h29b_peer h29b_admin < <(node_ports 1)
read -r g22_client g22_peer g22_admin < <(node_ports 2)

# Refuse to start when something already listens on one of the ports (an
# earlier run still going would otherwise answer the readiness checks).
for port in $pki_port $backend_port $lb_mgmt $lb_gw $lb_peer $lb_stats \
  $gwa_mgmt $gwa_admin $gwa_gw $gwb_mgmt $gwb_admin $gwb_gw \
  $h29a_client $h29a_peer $h29a_admin $h29b_client $h29b_peer $h29b_admin \
  $g22_client $g22_peer $g22_admin; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "127.0.0.1:$port is in use (another run? choose other ports with --port-base)"
  fi
done

# --- identities (as in the demo, docs/design.md §12) ----------------------------------
operator_member="VN/GOV/000.00.00.A01"
provider="VN/GOV/000.00.00.H29"
consumer="VN/GOV/000.00.00.G22"
client="$consumer/QLHT"
service="$provider/CSDLDC/citizen/v1"
sample_path="/persons/001099012345"

# --- processes and clean-up -----------------------------------------------------
names=()
pids=()
created_schemas=false
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if ((${#pids[@]})); then
    echo "==> stopping"
    local i
    for i in "${!pids[@]}"; do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
    for _ in $(seq 1 100); do
      local alive=false
      for i in "${!pids[@]}"; do kill -0 "${pids[$i]}" 2>/dev/null && alive=true; done
      $alive || break
      sleep 0.1
    done
    for i in "${!pids[@]}"; do
      kill -KILL "${pids[$i]}" 2>/dev/null || true
      wait "${pids[$i]}" 2>/dev/null || true
      echo "    stopped ${names[$i]}"
    done
  fi
  if $created_schemas && ! $keep_db; then
    psql "$pg_url" -q -v ON_ERROR_STOP=1 -c "DROP SCHEMA IF EXISTS ${prefix}_registry, ${prefix}_gateway_log, ${prefix}_node_log CASCADE" >/dev/null 2>&1 \
      && echo "    dropped the schemas ${prefix}_*" \
      || echo "    could not drop the schemas ${prefix}_* (remove them by hand)"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME PROGRAM ARGS...: runs a service in the background, stderr to
# logs/NAME.log. PROGRAM is executed in place of the subshell, so the pid
# recorded is the service's own.
start() {
  local name=$1
  shift
  (exec "$@" >/dev/null 2>"$dir/logs/$name.log") &
  names+=("$name")
  pids+=("$!")
}

# pid_of NAME
pid_of() {
  local i
  for i in "${!names[@]}"; do [[ ${names[$i]} == "$1" ]] && echo "${pids[$i]}"; done
}

# wait_http URL [SECONDS]: until URL answers 2xx.
wait_http() {
  local url=$1 limit=${2:-30} i
  for ((i = 0; i < limit * 10; i++)); do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "$url did not answer within $limit s (see $dir/logs/)"
}

# Waits until HAProxy's health checks have marked BACKEND/SERVER up: a
# balancer that still counts a process down sends every new connection to
# the others, and the consumer node keeps its peer connections open.
wait_up() {
  local backend=$1 server=$2 limit=${3:-30} i
  for ((i = 0; i < limit * 10; i++)); do
    curl -fsS --max-time 1 "http://127.0.0.1:$lb_stats/stats;csv" 2>/dev/null |
      awk -F, -v b="$backend" -v s="$server" '$1 == b && $2 == s && $18 == "UP" { ok = 1 } END { exit !ok }' &&
      return 0
    sleep 0.1
  done
  fail "HAProxy did not mark $backend/$server up within $limit s (see http://127.0.0.1:$lb_stats/stats)"
}

gw() { "$bin/ndxp-gateway" "$@"; }
node() { "$bin/ndxp-node" "$@"; }

# --- binaries ---------------------------------------------------------------------
if [[ -z $bin ]]; then
  echo "==> building the binaries"
  (cd "$root" && cargo build --locked --bins -p ndxp-gateway -p ndxp-node -p ndxp-examples)
  bin="$root/target/debug"
fi
bin=$(cd "$bin" && pwd)
for b in ndxp-gateway ndxp-node citizen-registry; do
  [[ -x $bin/$b ]] || fail "$bin/$b is missing (cargo build --workspace --bins builds it)"
done

rm -rf "$dir"
mkdir -p "$dir/logs"
dir=$(cd "$dir" && pwd)
echo "==> scale-out directory $dir"

# --- one PostgreSQL database, three schemas ------------------------------------------
# registry (shared by both gateway processes), the gateway message log (one
# chain per gateway process) and the provider's message log (one chain per
# node process).
psql "$pg_url" -q -v ON_ERROR_STOP=1 \
  -c "CREATE SCHEMA ${prefix}_registry; CREATE SCHEMA ${prefix}_gateway_log; CREATE SCHEMA ${prefix}_node_log" \
  || fail "cannot create the schemas ${prefix}_* in $pg_url (is PostgreSQL running? bash .ci/run starts it)"
created_schemas=true
sep='?'
[[ $pg_url == *\?* ]] && sep='&'
schema_url() { echo "${pg_url}${sep}options=-c%20search_path%3D${prefix}_$1"; }
registry_url=$(schema_url registry)
gateway_log_url=$(schema_url gateway_log)
node_log_url=$(schema_url node_log)
echo "==> PostgreSQL: schemas ${prefix}_registry, ${prefix}_gateway_log, ${prefix}_node_log"

# --- PKI, keys and certificates ---------------------------------------------------------
pki="$dir/pki"
gw pki init --dir "$pki" --ocsp-url "http://127.0.0.1:$pki_port/ocsp" >/dev/null
# issue KEYS_DIR PROFILE MEMBER [NODE]: the node certificates carry 127.0.0.1 only.
issue() {
  local extra=()
  [[ $2 == auth ]] && extra=(--node "$4" --ip 127.0.0.1)
  gw pki issue --dir "$pki" --profile "$2" --member "$3" "${extra[@]}" \
    --csr "$1/$2.csr" --out "$1/$2.pem" >/dev/null
}
node keys init --dir "$dir/mgmt-keys" --member "$operator_member" --node mgmt >/dev/null
issue "$dir/mgmt-keys" sign "$operator_member"
# The provider's ONE node identity, used by both of its processes.
h29="$dir/nodes/node-h29"
node keys init --dir "$h29/keys" --member "$provider" --node node-h29 --alt-name 127.0.0.1 >/dev/null
g22="$dir/nodes/node-g22"
node keys init --dir "$g22/keys" --member "$consumer" --node node-g22 --alt-name 127.0.0.1 >/dev/null
for k in "$h29/keys:$provider:node-h29" "$g22/keys:$consumer:node-g22"; do
  IFS=: read -r kd member node <<<"$k"
  issue "$kd" auth "$member" "$node"
  issue "$kd" sign "$member"
  cp "$pki/chain.pem" "$kd/chain.pem"
done
start pki "$bin/ndxp-gateway" pki serve --dir "$pki" --listen "127.0.0.1:$pki_port"
wait_http "http://127.0.0.1:$pki_port/healthz"
echo "==> PKI in $pki; OCSP and TSA on 127.0.0.1:$pki_port"

# --- two ndxp-gateway processes (management + central gateway) --------------------------
gateway_config() { # FILE MGMT ADMIN GATEWAY
  cat >"$1" <<EOF
instance = "VN"

[storage]
url = "$registry_url"

[management]
listen = "127.0.0.1:$2"
# Nodes reach management through the balancer; the anchor names this URL.
public_url = "http://127.0.0.1:$lb_mgmt"

[admin]
listen = "127.0.0.1:$3"

[gateway]
listen = "127.0.0.1:$4"
log_url = "$gateway_log_url"
registry_poll_ms = 500

[globalconf]
signing_key = "mgmt-keys/sign.key"
signing_cert = "mgmt-keys/sign.pem"
signing_chain = "pki/chain.pem"

[[globalconf.cas]]
name = "NDXP Root CA"
cert = "pki/ca.pem"
ocsp_urls = ["http://127.0.0.1:$pki_port/ocsp"]

[[globalconf.tsas]]
name = "NDXP TSA"
url = "http://127.0.0.1:$pki_port/tsa"
cert = "pki/tsa.pem"

[monitoring]
gateway_log_url = "$gateway_log_url"
EOF
}
gateway_config "$dir/gateway-a.toml" "$gwa_mgmt" "$gwa_admin" "$gwa_gw"
gateway_config "$dir/gateway-b.toml" "$gwb_mgmt" "$gwb_admin" "$gwb_gw"
# Both start at once on the empty schemas: the migrations take a PostgreSQL
# advisory lock, so one process migrates and the other waits.
start gateway-a "$bin/ndxp-gateway" serve --config "$dir/gateway-a.toml"
start gateway-b "$bin/ndxp-gateway" serve --config "$dir/gateway-b.toml"
wait_http "http://127.0.0.1:$gwa_admin/readyz"
wait_http "http://127.0.0.1:$gwb_admin/readyz"
echo "==> ndxp-gateway A: management 127.0.0.1:$gwa_mgmt, gateway 127.0.0.1:$gwa_gw, admin 127.0.0.1:$gwa_admin"
echo "==> ndxp-gateway B: management 127.0.0.1:$gwb_mgmt, gateway 127.0.0.1:$gwb_gw, admin 127.0.0.1:$gwb_admin"

# --- HAProxy ------------------------------------------------------------------------------
cat >"$dir/haproxy.cfg" <<EOF
# HAProxy in front of the NDXP processes (docs/scale-out.md).
global
    maxconn 4096

defaults
    timeout connect 2s
    # Longer than a node's 90 s idle pool, so the node closes idle
    # connections first and never sends on one the balancer just closed.
    timeout client 120s
    timeout server 120s
    # A server that refuses the connection is tried again, then another one.
    retries 3
    option redispatch 1
    default-server inter 500ms fall 2 rise 2

# Management API and /globalconf of both gateway processes. HTTP mode:
# each request is balanced on its own.
frontend management
    mode http
    bind 127.0.0.1:$lb_mgmt
    default_backend management
backend management
    mode http
    balance roundrobin
    option httpchk GET /readyz
    server gateway-a 127.0.0.1:$gwa_mgmt check port $gwa_admin
    server gateway-b 127.0.0.1:$gwb_mgmt check port $gwb_admin

# The central gateway role of both processes.
frontend gateway
    mode http
    bind 127.0.0.1:$lb_gw
    default_backend gateway
backend gateway
    mode http
    balance roundrobin
    option httpchk GET /readyz
    # A GET whose server died before answering is sent again to the other
    # one; anything else is answered 502/503 and left to the client.
    retry-on conn-failure empty-response
    http-request disable-l7-retry unless METH_GET
    server gateway-a 127.0.0.1:$gwa_gw check port $gwa_admin
    server gateway-b 127.0.0.1:$gwb_gw check port $gwb_admin

# The provider's peer port: TCP mode, so mutual TLS ends at the node
# process and the node sees the consumer node's certificate itself.
frontend provider-peer
    mode tcp
    bind 127.0.0.1:$lb_peer
    default_backend provider-peer
backend provider-peer
    mode tcp
    balance roundrobin
    option httpchk GET /readyz
    server node-h29-a 127.0.0.1:$h29a_peer check port $h29a_admin
    server node-h29-b 127.0.0.1:$h29b_peer check port $h29b_admin

frontend stats
    mode http
    bind 127.0.0.1:$lb_stats
    stats enable
    stats uri /stats
    stats refresh 2s
EOF
haproxy -c -q -f "$dir/haproxy.cfg" || fail "haproxy refuses $dir/haproxy.cfg"
start haproxy haproxy -db -f "$dir/haproxy.cfg"
wait_http "http://127.0.0.1:$lb_mgmt/globalconf"
echo "==> HAProxy: management 127.0.0.1:$lb_mgmt, gateway 127.0.0.1:$lb_gw, provider peer 127.0.0.1:$lb_peer (TCP), stats http://127.0.0.1:$lb_stats/stats"

# --- registry: members, subsystems, the service, the anchor -----------------------------
cfg="$dir/gateway-a.toml" # any of the two: the command lines write the shared registry
gw members add --config "$cfg" --id "$provider" --name "Bộ Công an (scale-out)" >/dev/null
gw members add --config "$cfg" --id "$consumer" --name "Bộ Tư pháp (scale-out)" >/dev/null
gw subsystems add --config "$cfg" --id "$provider/CSDLDC" >/dev/null
gw subsystems add --config "$cfg" --id "$client" >/dev/null
# On the central gateway (and, with it, in the catalogue the nodes see).
gw gateway services register --config "$cfg" --id "$service" \
  --backend "http://127.0.0.1:$backend_port" --description "Citizen record lookup (scale-out)" \
  --rate 1000000 --burst 1000000 >/dev/null
gw gateway services publish --config "$cfg" --id "$service" >/dev/null
gw conf anchor --config "$cfg" --out "$dir/anchor.json" >/dev/null
echo "==> registry: members $provider and $consumer, service $service"

# --- nodes ----------------------------------------------------------------------------------
node_config() { # FILE MEMBER NAME ADDRESS CLIENT PEER ADMIN LOG_URL LOCAL
  cat >"$1" <<EOF
[node]
member = "$2"
name = "$3"
address = "$4"
keys_dir = "../keys"

[management]
url = "http://127.0.0.1:$lb_mgmt"

[conf]
anchor = "$dir/anchor.json"
dir = "conf"

[client]
listen = "127.0.0.1:$5"

[peer]
listen = "127.0.0.1:$6"

[admin]
listen = "127.0.0.1:$7"

[log]
url = "$8"
timestamp_interval_secs = 1

[local]
file = "$9"
EOF
}
# Both provider processes: the same [node] identity and address (the
# balancer), the same keys, local configuration and message log; their own
# ports, global configuration copy, admin token and report state.
mkdir -p "$h29/a" "$h29/b" "$g22/a"
node_config "$h29/a/node.toml" "$provider" node-h29 "https://127.0.0.1:$lb_peer" \
  "$h29a_client" "$h29a_peer" "$h29a_admin" "$node_log_url" ../local.json
node_config "$h29/b/node.toml" "$provider" node-h29 "https://127.0.0.1:$lb_peer" \
  "$h29b_client" "$h29b_peer" "$h29b_admin" "$node_log_url" ../local.json
node_config "$g22/a/node.toml" "$consumer" node-g22 "https://127.0.0.1:$g22_peer" \
  "$g22_client" "$g22_peer" "$g22_admin" "sqlite://log.db" ../local.json
# One HTTP/2 connection per provider process behind the balancer
# (docs/scale-out.md, "Connections and balancing").
cat >>"$g22/a/node.toml" <<EOF

[exchange]
peer_connections = 2
EOF

# Admission: one registration for the provider's node (not one per process).
for conf in "$h29/a/node.toml" "$g22/a/node.toml"; do
  id=$(node register --config "$conf" | awk '$1 == "id:" {print $2}')
  [[ -n $id ]] || fail "no request id from ndxp-node register --config $conf"
  gw requests approve --config "$cfg" --id "$id" >/dev/null
done
for conf in "$h29/a/node.toml" "$h29/b/node.toml" "$g22/a/node.toml"; do
  node conf fetch --config "$conf" >/dev/null
done
echo "==> admitted node-h29 (address https://127.0.0.1:$lb_peer, the balancer) and node-g22"

# Local configuration: written once, read by both provider processes.
node subsystems add --config "$h29/a/node.toml" --id "$provider/CSDLDC" >/dev/null
node services add --config "$h29/a/node.toml" --service "$service" --backend "http://127.0.0.1:$backend_port" >/dev/null
node access grant --config "$h29/a/node.toml" --service "$service" --client "$client" >/dev/null
node subsystems add --config "$g22/a/node.toml" --id "$client" >/dev/null

start citizen-registry "$bin/citizen-registry" --listen "127.0.0.1:$backend_port" --threads 2
wait_http "http://127.0.0.1:$backend_port/healthz"
start node-h29-a "$bin/ndxp-node" serve --config "$h29/a/node.toml"
start node-h29-b "$bin/ndxp-node" serve --config "$h29/b/node.toml"
start node-g22 "$bin/ndxp-node" serve --config "$g22/a/node.toml"
wait_http "http://127.0.0.1:$h29a_admin/readyz"
wait_http "http://127.0.0.1:$h29b_admin/readyz"
wait_http "http://127.0.0.1:$g22_admin/readyz"
for server in node-h29-a node-h29-b; do wait_up provider-peer "$server"; done
for server in gateway-a gateway-b; do wait_up gateway "$server"; done
echo "==> node-h29 process A: client 127.0.0.1:$h29a_client, peer 127.0.0.1:$h29a_peer, admin 127.0.0.1:$h29a_admin"
echo "==> node-h29 process B: client 127.0.0.1:$h29b_client, peer 127.0.0.1:$h29b_peer, admin 127.0.0.1:$h29b_admin"
echo "==> node-g22 (consumer): client 127.0.0.1:$g22_client, calls node-h29 through 127.0.0.1:$lb_peer"

# --- centralized model: subscription and credentials --------------------------------------
sub=$(gw gateway subscriptions request --config "$cfg" --service "$service" --client "$client" | awk '{print $3}')
gw gateway subscriptions approve --config "$cfg" --id "$sub" >/dev/null
creds=$(gw gateway credentials create --config "$cfg" --client "$client" 2>/dev/null)
client_id=$(sed -n 's/^client_id=//p' <<<"$creds")
client_secret=$(sed -n 's/^client_secret=//p' <<<"$creds")
[[ -n $client_id && -n $client_secret ]] || fail "no credentials from gateway credentials create"

# --- first calls through both balancers ------------------------------------------------------
token=""
for _ in $(seq 1 50); do # the gateways pick up command-line changes within registry_poll_ms
  token=$(curl -fsS -u "$client_id:$client_secret" -d grant_type=client_credentials \
    "http://127.0.0.1:$lb_gw/oauth2/token" 2>/dev/null | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p') || true
  [[ -n $token ]] && break
  sleep 0.2
done
[[ -n $token ]] || fail "no access token from http://127.0.0.1:$lb_gw/oauth2/token"
call_ok() { # NAME URL [curl args...]
  local name=$1 url=$2 i
  shift 2
  for i in $(seq 1 50); do
    if curl -fsS -o /dev/null --max-time 10 "$@" "$url" 2>/dev/null; then
      echo "==> $name: $url answered"
      return 0
    fi
    sleep 0.2
  done
  fail "$name: $url did not answer 2xx"
}
call_ok "centralized model through HAProxy" "http://127.0.0.1:$lb_gw/$service$sample_path" \
  -H "Authorization: Bearer $token"
call_ok "distributed model, consumer node -> HAProxy -> node-h29" \
  "http://127.0.0.1:$g22_client/r1/$service$sample_path" -H "NDXP-Client: $client"

# --- what was started -----------------------------------------------------------------------
state="$dir/scale-out.json"
{
  echo "{"
  echo "  \"dir\": \"$dir\","
  echo "  \"ca\": \"$pki/ca.pem\","
  echo "  \"service\": \"$service\","
  echo "  \"client\": \"$client\","
  echo "  \"sample_path\": \"$sample_path\","
  echo "  \"client_id\": \"$client_id\","
  echo "  \"client_secret\": \"$client_secret\","
  echo "  \"management_url\": \"http://127.0.0.1:$lb_mgmt\","
  echo "  \"gateway_url\": \"http://127.0.0.1:$lb_gw\","
  echo "  \"gateway_urls\": [\"http://127.0.0.1:$gwa_gw\", \"http://127.0.0.1:$gwb_gw\"],"
  echo "  \"consumer_url\": \"http://127.0.0.1:$g22_client\","
  echo "  \"provider_peer_url\": \"https://127.0.0.1:$lb_peer\","
  echo "  \"provider_configs\": [\"$h29/a/node.toml\", \"$h29/b/node.toml\"],"
  echo "  \"registry_url\": \"$registry_url\","
  echo "  \"gateway_log_url\": \"$gateway_log_url\","
  echo "  \"node_log_url\": \"$node_log_url\","
  echo "  \"pids\": {"
  for i in "${!names[@]}"; do
    comma=","
    ((i == ${#names[@]} - 1)) && comma=""
    echo "    \"${names[$i]}\": ${pids[$i]}$comma"
  done
  echo "  }"
  echo "}"
} >"$state.tmp"
chmod 600 "$state.tmp"
mv "$state.tmp" "$state"

echo "==> running (wrote $state):"
printf '    %-18s %s\n' process pid
for i in "${!names[@]}"; do printf '    %-18s %s\n' "${names[$i]}" "${pids[$i]}"; done

if $once; then
  from=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)
  to=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
  sleep 2 # timestamping runs every second
  node log archive --config "$h29/a/node.toml" --from "$from" --to "$to" --out "$dir/node-h29.ndxplog" >/dev/null
  node log verify "$dir/node-h29.ndxplog" --ca "$pki/ca.pem" | head -n 2 | sed 's/^/    /'
  echo "==> --once: done"
  exit 0
fi
echo "==> press Ctrl-C to stop"
declare -A reported=()
while :; do
  for i in "${!names[@]}"; do
    if [[ -z ${reported[$i]:-} ]] && ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "==> ${names[$i]} (pid ${pids[$i]}) exited; see $dir/logs/${names[$i]}.log"
      reported[$i]=1
    fi
  done
  sleep 1
done
