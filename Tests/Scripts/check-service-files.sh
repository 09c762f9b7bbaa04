#!/usr/bin/env bash
# Checks docs/service/: the systemd units (systemd-analyze verify when installed, required settings
# always), the OpenWrt package's procd script (sh -n, dash -n, busybox sh -n; required calls;
# Tests/Scripts/check-openwrt-package.sh runs it), the example
# agent configuration (only keys the parser knows, no inline key), and that every subcommand and
# option the units and the script run exists in the binary's --help.
#   Tests/Scripts/check-service-files.sh [LANRAGE_BINARY]   (default .build/debug/lanrage; VERBOSE=1
#   lists the checks that pass too)
set -uo pipefail
cd "$(dirname "$0")/../.."
binary=$(realpath "${1:-.build/debug/lanrage}")
dir=docs/service
status=0
passed=0
ok() { passed=$((passed + 1)); [ -z "${VERBOSE:-}" ] || echo "ok: $*"; }
fail() { echo "FAIL: $*"; status=1; }
skip() { echo "SKIPPED: $*"; }
# require FILE REGEX WHAT: FILE has a line matching REGEX (extended).
require() { grep -q -E -e "$2" "$1" && ok "$1: $3" || fail "$1: missing $3 (/$2/)"; }

[ -x "$binary" ] || { echo "FAIL: no binary at $binary (swift build --product lanrage)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# systemd units.
units=("$dir"/*.service)
for unit in "${units[@]}"; do
    for key in '^Description=' '^Type=(exec|simple)$' '^ExecStart=/usr/local/bin/lanrage ' \
               '^ExecReload=/bin/kill -HUP \$MAINPID$' '^Restart=on-failure$' '^RestartSec=' \
               '^NoNewPrivileges=yes$' '^ProtectSystem=strict$' '^ProtectHome=yes$' '^PrivateTmp=yes$' \
               '^After=.*network-online\.target' '^Wants=.*network-online\.target' '^WantedBy=multi-user\.target$'; do
        require "$unit" "$key" "${key//[\\^$]/}"
    done
    # The binary where the units expect it, so that verify finds an executable.
    sed "s#/usr/local/bin/lanrage#$binary#g" "$unit" > "$work/$(basename "$unit")"
done
require "$dir/lanrage.service" '^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW$' "capability bounding set"
require "$dir/lanrage.service" '^AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW$' "ambient capabilities"
require "$dir/lanrage.service" '^RuntimeDirectory=lanrage( |$)' "RuntimeDirectory=lanrage (the status socket)"
require "$dir/lanrage.service" '^DeviceAllow=/dev/net/tun rw$' "/dev/net/tun for wireguard-go"
require "$dir/lanrage.service" '^ExecStart=/usr/local/bin/lanrage agent --config /etc/lanrage/agent.conf$' "the agent's command line"
for server in control relay; do require "$dir/lanrage-$server.service" '^DynamicUser=yes$' "DynamicUser"; done
require "$dir/lanrage-control.service" '^StateDirectory=lanrage-control$' "StateDirectory for --state"
require "$dir/lanrage-control.service" '--state \$\{STATE_DIRECTORY\}' "--state in the StateDirectory"
require "$dir/lanrage-control.service" '^EnvironmentFile=-/etc/lanrage/control.env$' "the settings file"
for unit in lanrage lanrage-control; do require "$dir/$unit.service" '^After=.*time-sync\.target' "$unit: After=time-sync.target"; done
# The exit-code table in docs/CLI.md: every status marked "no" (but 0) is in each unit's
# RestartPreventExitStatus, and nothing else is.
table=docs/CLI.md
prevent=$(sed -n -E 's/^\| ([0-9]+) \|.*\| no \|$/\1/p' "$table" | grep -v -x 0 | sort -n | tr '\n' ' ' | sed 's/ $//')
[ -n "$prevent" ] || fail "$table: no exit-code table with a restarted column"
for unit in "${units[@]}"; do
    listed=$(sed -n 's/^RestartPreventExitStatus=//p' "$unit" | tr ' ' '\n' | sort -n | tr '\n' ' ' | sed 's/ $//')
    [ "$listed" = "$prevent" ] && ok "$unit: RestartPreventExitStatus=$listed as $table says" \
        || fail "$unit: RestartPreventExitStatus=$listed, $table says $prevent"
done
# The control server's settings file: only options the binary has.
for option in $(grep -o -E '(^|[ =])--[a-z-]+' "$dir/control.env.example" | tr -d ' ='); do
    "$binary" control --help 2>&1 | grep -q -E -- "$option " && ok "control.env.example: $option" || fail "control.env.example: lanrage control has no $option"
done
if command -v systemd-analyze >/dev/null; then
    if systemd-analyze verify --man=no "$work"/*.service > "$work/verify.log" 2>&1; then
        ok "systemd-analyze verify: ${units[*]}"
    else
        fail "systemd-analyze verify:"; cat "$work/verify.log"
    fi
else
    skip "systemd-analyze is not installed (apt-get install systemd): structural checks only"
fi

# The procd script.
init=packaging/openwrt/lanrage/files/lanrage.init
for shell in sh dash "busybox sh"; do
    if command -v "${shell%% *}" >/dev/null; then
        $shell -n "$init" && ok "$shell -n $init" || fail "$shell -n $init"
    else
        skip "$shell -n $init: ${shell%% *} is not installed"
    fi
done
require "$init" '^#!/bin/sh /etc/rc\.common$' "the rc.common interpreter line"
require "$init" '^USE_PROCD=1$' "USE_PROCD=1"
require "$init" '^START=[0-9]+$' "START"
require "$init" '^STOP=[0-9]+$' "STOP"
require "$init" 'procd_set_param command "\$PROG" agent --config "\$config"' "the agent's command line"
require "$init" 'procd_set_param respawn' "respawn"
require "$init" 'procd_set_param stderr 1' "stderr to logd"
require "$init" 'procd_send_signal lanrage .* HUP' "reload by SIGHUP"

# The example configuration: sections, keys the parser knows (commented ones too), no inline key.
example=$dir/agent.conf.example
parser=Sources/Agent/AgentConfiguration.swift
for section in Interface Party Relay Agent; do require "$example" "^\[$section\]$" "[$section]"; done
if grep -q -i -E '^#?[[:space:]]*PrivateKey[[:space:]]*=' "$example"; then fail "$example: an inline PrivateKey"; else ok "$example: no inline PrivateKey"; fi
if [ -r "$parser" ]; then
    known=$(grep -o -E 'case \("[a-z]+", "[a-z]+"\)' "$parser" | sed -E 's/case \("([a-z]+)", "([a-z]+)"\)/\1.\2/')
    section=""
    while IFS= read -r line; do
        case $line in
            \[*\]) section=$(tr -d '[]' <<< "$line" | tr '[:upper:]' '[:lower:]') ;;
            *)  key=$(sed -n -E 's/^#?([A-Z][A-Za-z]*)[[:space:]]*=.*/\1/p' <<< "$line" | tr '[:upper:]' '[:lower:]')
                [ -z "$key" ] && continue
                grep -q -x "$section.$key" <<< "$known" || fail "$example: [$section] $key is not a key $parser knows" ;;
        esac
    done < "$example"
    ok "$example: keys checked against $parser"
else
    skip "$example: no $parser on this branch to check the keys against"
fi

# Every subcommand and option used exists. (Commands: the units' ExecStart, the procd command line.)
commands=$( { sed -n 's#^ExecStart=/usr/local/bin/lanrage ##p' "${units[@]}"
              sed -n 's#.*procd_set_param command "$PROG" ##p' "$init" | tr -d '"'; } )
help=$("$binary" --help 2>&1)
missing=()
while read -r subcommand arguments; do
    if ! grep -q -E "^  $subcommand( |$)" <<< "$help"; then
        [[ " ${missing[*]} " == *" $subcommand "* ]] || { missing+=("$subcommand"); fail "'lanrage $subcommand' is not a subcommand of $binary"; }
        continue
    fi
    subhelp=$("$binary" "$subcommand" --help 2>&1 </dev/null)
    for option in $(grep -o -E '(^| )--[a-z-]+' <<< " $arguments"); do
        grep -q -E -- "$option " <<< "$subhelp" && ok "lanrage $subcommand $option" || fail "lanrage $subcommand has no option $option"
    done
done <<< "$commands"
echo "service files: $passed checks passed$([ $status = 0 ] || echo ", some FAILED")"
exit $status
