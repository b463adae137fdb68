#!/usr/bin/env bash
# Make sure a RabbitMQ broker accepts connections at RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672/).
# Starts Debian's rabbitmq-server when it is installed but not running, and installs it
# first when the user is root or has sudo. Otherwise prints the one command that would.
set -euo pipefail

url="${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}"
hostport="${url#*://}"
hostport="${hostport#*@}"
hostport="${hostport%%/*}"
host="${hostport%%:*}"
port="${hostport##*:}"
[ "$port" = "$hostport" ] && port=5672

answers() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

if answers; then
    echo "rabbitmq: accepting connections at $host:$port"
    exit 0
fi

case "$host" in
    127.*|localhost|::1) ;;
    *)
        echo "rabbitmq: nothing accepts connections at $host:$port, and it is not a local address to start one on." >&2
        echo "rabbitmq: start the broker at that address or set RABBITMQ_URL to a running broker." >&2
        exit 1
        ;;
esac

if [ "$(id -u)" -eq 0 ]; then
    sudo_cmd=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo_cmd="sudo -n"
else
    sudo_cmd="none"
fi

if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then
    if [ "$sudo_cmd" = "none" ]; then
        echo "rabbitmq: not installed and this user cannot install packages. Run:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y rabbitmq-server && sudo rabbitmq-server -detached" >&2
        exit 1
    fi
    echo "rabbitmq: installing Debian's rabbitmq-server"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq rabbitmq-server >/dev/null
fi

if [ "$sudo_cmd" = "none" ]; then
    echo "rabbitmq: installed but not running, and this user cannot start it. Run:" >&2
    echo "  sudo rabbitmq-server -detached" >&2
    exit 1
fi

echo "rabbitmq: starting rabbitmq-server"
PATH="$PATH:/usr/sbin" $sudo_cmd rabbitmq-server -detached || true
# await_startup fails at once right after -detached, so poll until the port accepts connections.
for _ in $(seq 1 120); do
    if answers; then
        echo "rabbitmq: accepting connections at $host:$port"
        exit 0
    fi
    sleep 0.5
done
echo "rabbitmq: started, but nothing accepts connections at $host:$port after 60 s; see /var/log/rabbitmq/" >&2
exit 1
