#!/bin/sh
# idle-rss.sh BINARY: starts `BINARY stun-server` on a loopback port, waits until it listens and one
# second more, and prints its resident memory (KiB) and thread count: "RSS THREADS" ("? ?" if it died).
set -u
binary=$1
port=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 20000 ))
"$binary" stun-server --listen "127.0.0.1:$port" --log-level error &
server=$!
for _ in $(seq 50); do
    if [ -r "/proc/$server/status" ] && ss -Hunl | grep -q "127.0.0.1:$port"; then break; fi
    sleep 0.1
done
sleep 1
rss="?"; threads="?"
if [ -r "/proc/$server/status" ]; then
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status")
    threads=$(awk '/^Threads/ {print $2}' "/proc/$server/status")
fi
kill "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
echo "$rss $threads"
