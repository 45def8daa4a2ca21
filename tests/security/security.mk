# Fuzzing and sanitizer builds (tests/security/README.md), included by the
# top-level Makefile. Separate build directories: build/ and lwwsync.so stay
# untouched.
#   make fuzz         libFuzzer targets (clang) in build-fuzz/, each run FUZZ_SECONDS (30)
#   make fuzz-build   only build them
#   make asan         the core unit tests, lwwsync.so, the SQLite tests and the
#                     convergence program with ASan+UBSan (g++) in build-asan/
#   make check-asan   build and run those
#   make check-asan-pg  the Postgres extension with ASan+UBSan under pg_regress/isolation

.PHONY: fuzz fuzz-build FORCE
FORCE:

# ------------------------------------------------------------------ fuzzing
FUZZ_CXX   ?= clang++
FUZZ_BUILD := build-fuzz
# -fno-sanitize-recover: UB stops the input, so libFuzzer keeps it as a crash.
# _GLIBCXX_ASSERTIONS: out-of-range operator[] on std containers aborts too.
# The ignore list names rapidjson's known UB (see the file).
FUZZ_FLAGS := -std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
              -fsanitize-ignorelist=tests/security/rapidjson.ignorelist -D_GLIBCXX_ASSERTIONS -Wall -Wextra
FUZZ_TARGETS := json changeset exchange_request exchange_response http_error jwt sync_options row_codec
FUZZ_BINS    := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_CORE    := $(COMMON_SRC:%.cpp=$(FUZZ_BUILD)/%.o)
FUZZ_HDRS    := $(wildcard tests/security/fuzz/*.h)

fuzz: fuzz-build
	tests/security/run_fuzz.sh

fuzz-build: $(FUZZ_BINS)

# Without clang and its libFuzzer runtime, say so instead of a compiler error.
# The stamp holds the compiler and flags, so changing them rebuilds everything.
$(FUZZ_BUILD)/.toolchain: tests/security/rapidjson.ignorelist FORCE
	@tests/security/check_fuzz_toolchain.sh $(FUZZ_CXX)
	@mkdir -p $(dir $@)
	@echo '$(FUZZ_CXX) $(FUZZ_FLAGS)' | cmp -s - $@ || echo '$(FUZZ_CXX) $(FUZZ_FLAGS)' >$@

# The core is instrumented for coverage; libFuzzer's main comes in at link.
$(FUZZ_BUILD)/%.o: %.cpp $(FUZZ_BUILD)/.toolchain
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(CPPFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/liblwwcore.a: $(FUZZ_CORE)
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/security/fuzz/fuzz_%.cpp $(FUZZ_HDRS) $(FUZZ_BUILD)/liblwwcore.a $(FUZZ_BUILD)/.toolchain
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/liblwwcore.a $(NET_LIBS)

$(FUZZ_BUILD)/fuzz_jwt: tests/security/fuzz/fuzz_jwt.cpp $(FUZZ_HDRS) $(FUZZ_BUILD)/server/jwt.o $(FUZZ_BUILD)/.toolchain
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/server/jwt.o -lcrypto

-include $(FUZZ_CORE:.o=.d) $(FUZZ_BUILD)/server/jwt.d
