# Sourced by the test and bench scripts. free_port prints a TCP port on
# 127.0.0.1 that no socket uses, or fails after 100 tries. Ports come from
# below Linux's ephemeral range (32768-60999), where client connections
# would take them, and from /dev/urandom: $RANDOM in a $(…) subshell does not
# advance the caller's, so two calls in a row would repeat a port.
free_port() {
    local p n
    for _ in $(seq 1 100); do
        n=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
        p=$((20000 + n % 12000))
        ss -Htan 2>/dev/null | awk '{print $4}' | grep -q ":$p\$" || { echo "$p"; return 0; }
    done
    return 1
}
