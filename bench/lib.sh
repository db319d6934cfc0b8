# Helpers the benchmark scripts share (sourced, not run).

# free_port: a port nothing listens on now, on 127.0.0.1.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_port PORT: waits up to 20 s for something to listen on 127.0.0.1:PORT.
wait_port() {
    for _ in $(seq 400); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
    echo "$(basename "$0"): nothing listens on 127.0.0.1:$1" >&2; return 1
}

# elapsed START: seconds since START (a `date +%s.%N`), with two decimals.
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }'; }
