#!/usr/bin/env bash
# The Debian packages on a clean machine (docs/packages.md): build them
# (`cargo xtask package`), install them with dpkg, check the user, the
# directories and their modes, verify the systemd units, run the first-run
# steps of docs/packages.md as the ndxp user, then start each installed
# service from the shipped configuration exactly as its unit's ExecStart
# says (as ndxp, umask 0077, no new privileges: there is no systemd in the
# CI container), wait for its health endpoint, stop it with SIGTERM and
# require exit status 0. The packages are purged at the end, also on
# failure, so the next run starts clean.
#
# Usage: scripts/package-check.sh [--no-build]   (as root, on Debian)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "package-check: $*"; }
fail() { echo "package-check: FAILED: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || { echo "package-check: run as root: it installs packages" >&2; exit 2; }

# Leftovers of an earlier interrupted run carry our marker and are removed;
# anything else is a real installation, which this script must not touch.
marker=/var/lib/ndxp-package-check
purge() {
  dpkg -P ndxp-node ndxp-gateway >/dev/null 2>&1 || true
  rm -rf /etc/ndxp /var/lib/ndxp
  rm -f "$marker"
}
if dpkg -s ndxp-gateway >/dev/null 2>&1 || dpkg -s ndxp-node >/dev/null 2>&1 \
  || [[ -e /etc/ndxp || -e /var/lib/ndxp ]]; then
  if [[ -e $marker ]]; then
    say "removing the leftovers of an interrupted run"
    purge
  else
    fail "NDXP is installed on this machine (/etc/ndxp, /var/lib/ndxp or the packages); this check needs a clean one"
  fi
fi

t0=$SECONDS
if [[ ${1:-} != --no-build ]]; then
  cargo xtask package --install-tools
fi
build_secs=$((SECONDS - t0))
newest() { ls -t target/debian/"$1"_*.deb 2>/dev/null | head -n 1; }
gateway_deb=$(newest ndxp-gateway)
node_deb=$(newest ndxp-node)
[[ -n $gateway_deb && -n $node_deb ]] || fail "no packages in target/debian (run cargo xtask package)"

pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  purge
  if [[ $status == 0 ]]; then say "packages purged"; else say "packages purged after a failure"; fi
}
trap cleanup EXIT

touch "$marker"
say "installing $gateway_deb $node_deb"
if ! dpkg -i "$gateway_deb" "$node_deb"; then
  # Missing dependencies (libssl3, adduser): let apt bring them.
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -f
fi

# The user, the directories and the configuration as docs/packages.md lists them.
[[ $(getent passwd ndxp | cut -d: -f7) == /usr/sbin/nologin ]] || fail "no ndxp system user with a nologin shell"
expect_stat() { # OWNER:GROUP MODE PATH
  local got
  got=$(stat -c '%U:%G %a' "$3") || fail "$3 is missing"
  [[ $got == "$1 $2" ]] || fail "$3 is $got, not $1 $2"
}
expect_stat root:ndxp 750 /etc/ndxp
expect_stat root:ndxp 640 /etc/ndxp/gateway.toml
expect_stat root:ndxp 640 /etc/ndxp/node.toml
expect_stat root:ndxp 750 /etc/ndxp/gateway
expect_stat root:ndxp 750 /etc/ndxp/node
expect_stat ndxp:ndxp 700 /etc/ndxp/gateway/mgmt-keys
expect_stat ndxp:ndxp 700 /etc/ndxp/node/keys
expect_stat ndxp:ndxp 700 /var/lib/ndxp/gateway
expect_stat ndxp:ndxp 700 /var/lib/ndxp/node
for f in /usr/bin/ndxp-gateway /usr/bin/ndxp-node; do
  [[ -x $f ]] || fail "$f is not installed"
  "$f" --version
done
[[ -s /usr/share/man/man1/ndxp-node-keys-init.1.gz ]] || fail "no man page ndxp-node-keys-init(1)"
[[ -s /usr/share/bash-completion/completions/ndxp-gateway ]] || fail "no bash completion"
units=(/usr/lib/systemd/system/ndxp-gateway.service /usr/lib/systemd/system/ndxp-pki.service
  /usr/lib/systemd/system/ndxp-node.service)
if command -v systemd-analyze >/dev/null 2>&1; then
  say "systemd-analyze verify ${units[*]}"
  out=$(systemd-analyze verify "${units[@]}" 2>&1) || fail "systemd-analyze verify: $out"
  # Any complaint about our own units is a failure (the tool may also
  # comment on units of the host it reads along the way). Their man pages
  # are checked above: `man` itself may be missing from a CI image.
  if grep -E 'ndxp-(gateway|pki|node)\.service' <<<"$out" | grep -v "Command 'man "; then
    fail "systemd-analyze verify complained about the units"
  fi
  security=$(systemd-analyze security --offline=true /usr/lib/systemd/system/ndxp-node.service 2>/dev/null | tail -n 1 || true)
  [[ -z $security ]] || say "ndxp-node.service: $security"
else
  say "systemd-analyze not found: the units are not verified"
fi

as_ndxp() { setpriv --reuid=ndxp --regid=ndxp --init-groups --no-new-privs -- "$@"; }

# First run, as docs/packages.md says (platform operator, then member).
say "first run: the CA, the management signing key and certificate"
as_ndxp ndxp-gateway pki init --dir /var/lib/ndxp/pki
as_ndxp ndxp-node keys init --dir /etc/ndxp/gateway/mgmt-keys --member VN/GOV/MGMT --node mgmt
as_ndxp ndxp-gateway pki issue --dir /var/lib/ndxp/pki --csr /etc/ndxp/gateway/mgmt-keys/sign.csr \
  --profile sign --member VN/GOV/MGMT --out /etc/ndxp/gateway/mgmt-keys/sign.pem

# Starts what a unit's ExecStart names, as its User= with its UMask=.
start_unit() { # UNIT
  local cmd
  cmd=$(sed -n 's/^ExecStart=//p' "/usr/lib/systemd/system/$1")
  [[ -n $cmd ]] || fail "$1 has no ExecStart"
  grep -qx 'User=ndxp' "/usr/lib/systemd/system/$1" || fail "$1 does not run as ndxp"
  say "starting $1: $cmd"
  # shellcheck disable=SC2086 # the unit's command line, split as systemd does
  (umask 0077 && exec setpriv --reuid=ndxp --regid=ndxp --init-groups --no-new-privs -- $cmd) \
    >"/tmp/package-check-$1.log" 2>&1 &
  pids+=($!)
  started_pid=$!
}
wait_http() { # URL PID WHAT
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$1"; then return 0; fi
    kill -0 "$2" 2>/dev/null || { cat "/tmp/package-check-$3.log" >&2; fail "$3 exited before $1 answered"; }
    sleep 0.2
  done
  cat "/tmp/package-check-$3.log" >&2
  fail "$1 did not answer within 20 s"
}
stop_unit() { # PID UNIT
  kill -TERM "$1"
  local status=0
  wait "$1" || status=$?
  [[ $status == 0 ]] || { cat "/tmp/package-check-$2.log" >&2; fail "$2 exited $status after SIGTERM, not 0"; }
  say "$2 stopped on SIGTERM with status 0"
}

start_unit ndxp-pki.service
pki_pid=$started_pid
wait_http http://127.0.0.1:8190/healthz "$pki_pid" ndxp-pki.service
wait_http http://127.0.0.1:8191/readyz "$pki_pid" ndxp-pki.service
start_unit ndxp-gateway.service
gateway_pid=$started_pid
wait_http http://127.0.0.1:8101/healthz "$gateway_pid" ndxp-gateway.service
# Ready: the registry opened and the global configuration signed.
wait_http http://127.0.0.1:8101/readyz "$gateway_pid" ndxp-gateway.service
curl -fsS http://127.0.0.1:8100/globalconf -o /dev/null || fail "the management role serves no global configuration"
expect_stat ndxp:ndxp 600 /var/lib/ndxp/gateway/registry.db
# The packaged binaries name the commit they were built from.
commit=$(git rev-parse --short=12 HEAD)
build_info=$(curl -fsS http://127.0.0.1:8101/metrics | grep '^ndxp_build_info{' || true)
[[ $build_info == *"commit=\"$commit"* ]] || fail "ndxp_build_info does not name commit $commit: $build_info"
say "ndxp_build_info: $build_info"
say "the management role is up from /etc/ndxp/gateway.toml"

say "first run: the node's keys, certificates and anchor"
member=$(sed -n 's/^member = "\(.*\)"/\1/p' /etc/ndxp/node.toml)
name=$(sed -n 's/^name = "\(.*\)"/\1/p' /etc/ndxp/node.toml)
keys=/etc/ndxp/node/keys
as_ndxp ndxp-node keys init --dir "$keys" --member "$member" --node "$name"
as_ndxp ndxp-gateway pki issue --dir /var/lib/ndxp/pki --csr "$keys/auth.csr" --profile auth \
  --member "$member" --node "$name" --out "$keys/auth.pem"
as_ndxp ndxp-gateway pki issue --dir /var/lib/ndxp/pki --csr "$keys/sign.csr" --profile sign \
  --member "$member" --out "$keys/sign.pem"
as_ndxp cp /var/lib/ndxp/pki/chain.pem "$keys/chain.pem"
as_ndxp ndxp-gateway conf anchor --config /etc/ndxp/gateway.toml --out /var/lib/ndxp/gateway/anchor.json
install -o root -g ndxp -m 0640 /var/lib/ndxp/gateway/anchor.json /etc/ndxp/node/anchor.json

start_unit ndxp-node.service
node_pid=$started_pid
wait_http http://127.0.0.1:8203/healthz "$node_pid" ndxp-node.service
expect_stat ndxp:ndxp 600 /var/lib/ndxp/node/admin.token
ready=$(curl -sS http://127.0.0.1:8203/readyz || true)
say "the node is up from /etc/ndxp/node.toml; /readyz before registration: ${ready//$'\n'/ }"

stop_unit "$node_pid" ndxp-node.service
stop_unit "$gateway_pid" ndxp-gateway.service
stop_unit "$pki_pid" ndxp-pki.service
pids=()
say "passed (packages built in ${build_secs} s)"
