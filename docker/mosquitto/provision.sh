#!/usr/bin/env bash
# Build the seed of Mosquitto's dynamic-security store for wsim (docker/mosquitto/dynamic-security.json):
#   docker/mosquitto/provision.sh [out.json] [server password] [topic prefix] [bus prefix]
# It holds one account, the wsim server's ("wsim": the MQTT bridge, the MQTT bus and the provisioner of device
# accounts), and two roles. Everything else is denied (dynamic security's defaults: no publishing, no
# subscribing; anonymous clients are refused by mosquitto.conf):
#   wsim-server  read uplinks, publish downlinks, and the bus topics (publish and subscribe)
#   wsim-device  publish uplinks (any credential: the MAC says who; the bridge refuses the rest)
# Each device login gets its own account and role from the server (POST /api/transports/mqtt/credentials):
# the role lets it subscribe to its own downlink topic only, literally (no wildcards).
# Needs mosquitto and mosquitto_ctrl (2.0+); runs a throwaway broker on a free local port.
set -euo pipefail
out=${1:-$(dirname "$0")/dynamic-security.json}
password=${2:-wsim-mqtt}
prefix=${3:-wsim}
bus=${4:-wsim}
plugin=${MOSQUITTO_DYNSEC:-$(ls /usr/lib/*/mosquitto_dynamic_security.so /usr/lib/mosquitto_dynamic_security.so 2>/dev/null | head -1 || true)}
work=$(mktemp -d)
chmod 777 "$work"  # mosquitto started as root drops to its own user, which must read and save the store
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mosquitto_ctrl dynsec init "$work/ds.json" wsim "$password" >/dev/null
chmod 666 "$work/ds.json"
printf 'listener %s 127.0.0.1\nallow_anonymous false\nplugin %s\nplugin_opt_config_file %s\n' \
  "$port" "$plugin" "$work/ds.json" >"$work/m.conf"
mosquitto -c "$work/m.conf" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
ctl() { mosquitto_ctrl -h 127.0.0.1 -p "$port" -u wsim -P "$password" dynsec "$@" 2>&1 | grep -v -e "^Warning: You are running" -e "^This means all" -e "^$" || true; }
ctl createRole wsim-server
ctl addRoleACL wsim-server subscribePattern "$prefix/up/+" allow
ctl addRoleACL wsim-server publishClientSend "$prefix/down/#" allow
for topic in "$bus/node/#" "$bus/all"; do
  ctl addRoleACL wsim-server publishClientSend "$topic" allow
  ctl addRoleACL wsim-server subscribePattern "$topic" allow
done
ctl addClientRole wsim wsim-server
ctl createRole wsim-device
ctl addRoleACL wsim-device publishClientSend "$prefix/up/+" allow
kill "$pid"
wait "$pid" || true
cp "$work/ds.json" "$out"
echo "wrote $out (server account: wsim)"
