# Sourced by the test and bench scripts. free_port prints a TCP port on
# 127.0.0.1 that nothing listens on, or fails after 100 tries.
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        ss -Hltn 2>/dev/null | awk '{print $4}' | grep -q ":$p\$" || { echo "$p"; return 0; }
    done
    return 1
}
