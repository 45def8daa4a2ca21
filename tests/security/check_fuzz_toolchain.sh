#!/usr/bin/env bash
# Fails with a clear message when the fuzzing toolchain is missing: clang++
# and its libFuzzer + sanitizer runtimes (Debian 12: clang, libclang-rt-14-dev;
# scripts/deps.sh installs both).
set -uo pipefail
cxx=${1:-clang++}
hint="install them with scripts/deps.sh (Debian 12 packages: clang libclang-rt-14-dev)"
if ! command -v "$cxx" >/dev/null 2>&1; then
    echo "make fuzz: $cxx not found; the fuzz targets need clang and libFuzzer: $hint" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' >"$tmp/t.cpp"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$tmp/t.cpp" -o "$tmp/t" >"$tmp/log" 2>&1; then
    echo "make fuzz: $cxx cannot link -fsanitize=fuzzer,address,undefined (libFuzzer runtime missing?): $hint" >&2
    sed 's/^/  /' "$tmp/log" | head -5 >&2
    exit 1
fi
