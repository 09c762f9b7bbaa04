#!/bin/sh
# Runs inside the test VM (busybox sh, Debian kernel with the real wireguard.ko): two namespaces
# joined by veth, one kernel WireGuard interface in each, configured only through `lanrage wg apply`
# with the netlink backend; a ping crosses; `lanrage wg show` reads back the handshake. Then two
# `lanrage agent`s (netlink backend) and a control server: the agents create their kernel interfaces,
# reach keepalive on the direct path, `lanrage ping` crosses, SIGTERM removes the interfaces. Prints one
# marker line that the Makefile checks: "LANRAGE-KERNEL-TEST: PASS" or "LANRAGE-KERNEL-TEST: FAIL why".
L=/lanrage
fail() { echo "LANRAGE-KERNEL-TEST: FAIL $*"; exit 1; }
step() { echo "== $*"; }
in_a() { nsenter -t "$A" -n "$@"; }
in_b() { nsenter -t "$B" -n "$@"; }

step "namespaces and veth"
unshare -n sleep 600 & A=$!
unshare -n sleep 600 & B=$!
for _ in $(seq 1 50); do
    [ "$(readlink /proc/$A/ns/net)" != "$(readlink /proc/self/ns/net)" ] && [ "$(readlink /proc/$B/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break
    sleep 0.1
done
ip link add lwva type veth peer name lwvb || fail "veth"
ip link set lwva netns "$A" || fail "move lwva"
# busybox names the peer veth0 whatever is asked.
ip link set veth0 netns "$B" || fail "move peer"
in_b ip link set veth0 name lwvb || fail "rename peer"
in_a ip addr add 192.0.2.1/24 dev lwva; in_a ip link set lwva up; in_a ip link set lo up
in_b ip addr add 192.0.2.2/24 dev lwvb; in_b ip link set lwvb up; in_b ip link set lo up

step "keys"
KA=$($L genkey) || fail "genkey"
KB=$($L genkey) || fail "genkey"
PA=$(echo "$KA" | $L pubkey) || fail "pubkey"
PB=$(echo "$KB" | $L pubkey) || fail "pubkey"
PSK=$($L genpsk) || fail "genpsk"

cat > /tmp/a.conf <<CONF
[Interface]
PrivateKey = $KA
ListenPort = 51820
Address = 100.64.0.1/24

[Peer]
PublicKey = $PB
PresharedKey = $PSK
Endpoint = 192.0.2.2:51821
AllowedIPs = 100.64.0.2/32
CONF
cat > /tmp/b.conf <<CONF
[Interface]
PrivateKey = $KB
ListenPort = 51821
Address = 100.64.0.2/24

[Peer]
PublicKey = $PA
PresharedKey = $PSK
Endpoint = 192.0.2.1:51820
AllowedIPs = 100.64.0.1/32
CONF

step "lanrage wg apply (netlink backend, kernel module)"
in_a $L wg apply lwwa /tmp/a.conf --backend netlink || fail "apply a"
in_b $L wg apply lwwb /tmp/b.conf || fail "apply b (automatic backend)"
in_b $L wg apply lwwb /tmp/b.conf | grep -q "(netlink): unchanged" || fail "re-apply is not a no-op / backend not netlink"
in_a $L wg apply lwwa /tmp/a.conf --backend uapi 2>/dev/null && fail "uapi backend must refuse: no wireguard-go here"

step "ping across the overlay"
in_a ping -c 3 -W 3 100.64.0.2 || fail "ping over kernel WireGuard"

step "read back"
in_a $L wg show lwwa | tee /tmp/a.txt || fail "show"
grep -q "preshared key: (hidden)" /tmp/a.txt || fail "preshared key not read back"
grep -q -e "$KA" -e "$PSK" /tmp/a.txt && fail "a secret was printed"
in_a $L wg show lwwa --json > /tmp/a.json || fail "show --json"
in_a $L wg show | grep -q "^interface: lwwa" || fail "show without a name does not list lwwa"
AGE=$(grep '"latest_handshake_age_seconds"' /tmp/a.json | tr -dc '0-9')
RX=$(grep '"rx_bytes"' /tmp/a.json | tr -dc '0-9')
[ -n "$AGE" ] && [ "$AGE" -lt 60 ] || fail "no recent handshake read back (age '$AGE')"
[ -n "$RX" ] && [ "$RX" -gt 0 ] || fail "no received bytes read back"
grep -q "$KA" /tmp/a.json && fail "private key printed"
in_a ping -c 2 -W 3 100.64.0.2 >/dev/null || fail "second ping"
RX2=$(in_a $L wg show lwwa --json | grep '"rx_bytes"' | tr -dc '0-9')
[ "$RX2" -gt "$RX" ] || fail "rx counter did not grow ($RX -> $RX2)"

step "many peers: SET split across messages, GET dump reassembled"
cp /tmp/a.conf /tmp/many.conf
N=${MANY_PEERS:-400}
for i in $(seq 1 "$N"); do
    KEY=$(head -c 32 /dev/urandom | base64)
    printf '\n[Peer]\nPublicKey = %s\nAllowedIPs = 100.65.%d.%d/32, 2001:db8:%x::/64, 100.66.%d.%d/32\n' \
        "$KEY" $((i / 256)) $((i % 256)) "$i" $((i / 256)) $((i % 256)) >> /tmp/many.conf
done
T0=$(date +%s)
in_a $L wg apply lwwa /tmp/many.conf | grep -q "$N peer(s) added" || fail "apply $N peers"
COUNT=$(in_a $L wg show lwwa --json | grep -c '"allowed_ips"')
[ "$COUNT" -eq $((N + 1)) ] || fail "read back $COUNT peers, expected $((N + 1))"
ALLOWED=$(in_a $L wg show lwwa | grep -c 'allowed ips: 100.65')
[ "$ALLOWED" -eq "$N" ] || fail "allowed IPs of $ALLOWED peers read back, expected $N"
in_a $L wg apply lwwa /tmp/many.conf | grep -q "unchanged" || fail "re-apply of $N peers is not a no-op"
in_a $L wg apply lwwa /tmp/a.conf | grep -q "$N peer(s) removed" || fail "removing $N peers"
echo "many peers: $N applied, read back, re-applied and removed in $(( $(date +%s) - T0 )) s"
in_a ping -c 1 -W 3 100.64.0.2 >/dev/null || fail "tunnel still up after peer churn"

step "errors"
in_a $L wg apply lwva /tmp/a.conf 2>/tmp/err; [ $? -eq 1 ] && grep -q "exists but is not a kernel WireGuard interface" /tmp/err || fail "existing non-WireGuard interface not refused clearly: $(cat /tmp/err)"
cat /tmp/err
printf '[Interface]\nPrivateKey = nonsense\n' > /tmp/bad.conf
in_a $L wg apply lwwa /tmp/bad.conf 2>&1 | grep -q "/tmp/bad.conf:2: PrivateKey" || fail "bad key line not reported"

if [ "${LANRAGE_BENCH:-0}" = 1 ]; then
    step "benchmark: 1,000 peers through the netlink backend vs wg set / wg show dump (same kernel, same interface)"
    uptime_cs() { read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }   # centiseconds
    median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    cp /tmp/a.conf /tmp/bench.conf
    WGARGS=""
    for i in $(seq 1 1000); do
        KEY=$(head -c 32 /dev/urandom | base64)
        # Apart from the agents' overlay below: `wg apply` leaves the routes it added when their peers go.
        IP="100.80.$((i / 250 + 1)).$((i % 250 + 1))/32"
        EP="203.0.113.$((i % 250 + 1)):$((20000 + i))"
        printf '\n[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s\n' "$KEY" "$EP" "$IP" >> /tmp/bench.conf
        WGARGS="$WGARGS peer $KEY endpoint $EP allowed-ips $IP"
    done
    : > /tmp/la; : > /tmp/ls; : > /tmp/wa; : > /tmp/ws
    for round in 1 2 3; do
        t0=$(uptime_cs); in_a $L --log-level warning wg apply lwwa /tmp/bench.conf > /tmp/out; t1=$(uptime_cs)
        grep -q "1000 peer(s) added" /tmp/out || fail "bench apply: $(cat /tmp/out)"
        echo $((t1 - t0)) >> /tmp/la
        t0=$(uptime_cs); in_a $L wg show lwwa --json > /tmp/bench.json; t1=$(uptime_cs)
        [ "$(grep -c '"allowed_ips"' /tmp/bench.json)" = 1001 ] || fail "bench read back"
        echo $((t1 - t0)) >> /tmp/ls
        in_a $L --log-level warning wg apply lwwa /tmp/a.conf > /dev/null || fail "bench reset"
        t0=$(uptime_cs); in_a /wg set lwwa $WGARGS || fail "wg set"; t1=$(uptime_cs)
        echo $((t1 - t0)) >> /tmp/wa
        t0=$(uptime_cs); in_a /wg show lwwa dump > /tmp/dump; t1=$(uptime_cs)
        [ "$(wc -l < /tmp/dump)" = 1002 ] || fail "wg show dump read back $(wc -l < /tmp/dump) lines"
        echo $((t1 - t0)) >> /tmp/ws
        in_a $L --log-level warning wg apply lwwa /tmp/a.conf > /dev/null || fail "bench reset"
    done
    echo "LANRAGE-BENCH: netlink apply 1000 peers: lanrage $(median < /tmp/la)0 ms, wg set $(median < /tmp/wa)0 ms (median of 3, 10 ms resolution, qemu)"
    echo "LANRAGE-BENCH: netlink read back 1000 peers: lanrage $(median < /tmp/ls)0 ms, wg show dump $(median < /tmp/ws)0 ms"
fi

step "lanrage agent on the kernel module: control server in A, one agent in each namespace (netlink backend)"
umask 077
$L ca genkey > /tmp/authority.key; $L genkey > /tmp/server.key
$L genkey > /tmp/agent-a.key; $L genkey > /tmp/agent-b.key
umask 022
AUTHORITY=$($L ca pubkey < /tmp/authority.key)
SERVER_KEY=$($L pubkey < /tmp/server.key)
for side in a b; do
    if [ $side = a ]; then ADDRESS=100.64.1.1; else ADDRESS=100.64.1.2; fi
    $L ca sign --key /tmp/authority.key --party kernel --member "$($L pubkey < /tmp/agent-$side.key)" \
        --address $ADDRESS/32 --name $side -o /tmp/agent-$side.cert || fail "ca sign"
    cat > /tmp/agent-$side.conf <<CONF
[Interface]
PrivateKeyFile = /tmp/agent-$side.key
ListenPort = 51830
Name = lrk$side
[Party]
Control = 192.0.2.1:3478
ControlKey = $SERVER_KEY
Name = kernel
Authority = $AUTHORITY
Certificate = /tmp/agent-$side.cert
[Agent]
Backend = netlink
StatusSocket = /tmp/agent-$side.sock
LivenessPoll = 2s
CONF
done
nsenter -t "$A" -n $L control --listen 192.0.2.1:3478 --key /tmp/server.key --state /tmp/control-state --party kernel="$AUTHORITY" > /tmp/control.log 2>&1 &
CONTROL=$!
sleep 0.5
# nsenter itself (not the in_a function, which a background job would run in a subshell): the PID is the agent's.
nsenter -t "$A" -n $L agent --config /tmp/agent-a.conf > /tmp/agent-a.log 2>&1 & AGENT_A=$!
nsenter -t "$B" -n $L agent --config /tmp/agent-b.conf > /tmp/agent-b.log 2>&1 & AGENT_B=$!
state=""
for _ in $(seq 1 150); do
    state=$($L status --socket /tmp/agent-a.sock 2>/dev/null | grep "state:")
    case "$state" in *keepalive*) break ;; esac
    sleep 0.2
done
case "$state" in *keepalive*) ;; *) cat /tmp/agent-a.log; fail "agent a never reached keepalive: $state" ;; esac
$L status --socket /tmp/agent-a.sock
$L status --socket /tmp/agent-a.sock | grep -q "lrka (netlink)" || fail "agent a does not use the netlink backend"
# A failure shows what each agent did last and what WireGuard holds (ENOKEY: no peer's allowed IPs
# hold the destination).
agents_fail() {
    for side in a b; do echo "-- agent $side"; tail -25 /tmp/agent-$side.log; done
    in_a $L wg show lrka; in_b $L wg show lrkb
    fail "$@"
}
in_a $L ping 100.64.1.2 --count 2 --socket /tmp/agent-a.sock | tee /tmp/ping.txt || agents_fail "lanrage ping over the agent's kernel tunnel"
grep -q "direct to 192.0.2.2:51830" /tmp/ping.txt || agents_fail "the path is not direct to agent b"
in_b ping -c 1 -W 3 100.64.1.1 >/dev/null || agents_fail "ping b -> a"
kill -TERM "$AGENT_A" "$AGENT_B"
wait "$AGENT_A"; STATUS_A=$?
wait "$AGENT_B"; STATUS_B=$?
[ "$STATUS_A" = 0 ] && [ "$STATUS_B" = 0 ] || { tail -5 /tmp/agent-a.log; fail "agents exited $STATUS_A and $STATUS_B on SIGTERM"; }
in_a ip link show lrka 2>/dev/null && { tail -5 /tmp/agent-a.log; fail "agent a left its interface behind"; }
in_b ip link show lrkb 2>/dev/null && { tail -5 /tmp/agent-b.log; fail "agent b left its interface behind"; }
kill "$CONTROL" 2>/dev/null
grep -q "transition" /tmp/agent-a.log || fail "no transition traced"

step "delete"
in_a $L wg delete lwwa || fail "delete"
in_a ip link show lwwa 2>/dev/null && fail "interface still there"

kill "$A" "$B" 2>/dev/null
echo "LANRAGE-KERNEL-TEST: PASS"
