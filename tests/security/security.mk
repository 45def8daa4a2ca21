# Fuzzing and sanitizer builds (tests/security/README.md), included by the
# top-level Makefile. Separate build directories: build/ and lwwsync.so stay
# untouched.
#   make fuzz         libFuzzer targets (clang) in build-fuzz/, each run FUZZ_SECONDS (30)
#   make fuzz-build   only build them
#   make asan         the core unit tests, lwwsync.so, the SQLite tests and the
#                     convergence program with ASan+UBSan (g++) in build-asan/
#   make check-asan   build and run those
#   make check-asan-pg  the Postgres extension with ASan+UBSan under pg_regress/isolation

.PHONY: fuzz fuzz-build asan check-asan check-asan-pg FORCE
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

# The gateway parses JWT JSON with the core's reader.
$(FUZZ_BUILD)/fuzz_jwt: tests/security/fuzz/fuzz_jwt.cpp $(FUZZ_HDRS) $(FUZZ_BUILD)/server/jwt.o $(FUZZ_BUILD)/common/json.o $(FUZZ_BUILD)/common/base64.o $(FUZZ_BUILD)/.toolchain
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/server/jwt.o $(FUZZ_BUILD)/common/json.o $(FUZZ_BUILD)/common/base64.o -lcrypto

-include $(FUZZ_CORE:.o=.d) $(FUZZ_BUILD)/server/jwt.d
# ------------------------------------------------------------ ASan + UBSan
ASAN_CXX   ?= $(CXX)
ASAN_BUILD := build-asan
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer
# GCC 12 warns maybe-uninitialized inside <regex> (used by tests) only with
# the sanitizers on: a false positive of the compiler, not of our code.
ASAN_CXXFLAGS := $(ASAN_FLAGS) -std=c++17 -fPIC -Wall -Wextra -fvisibility=hidden -Wno-maybe-uninitialized
ASAN_COMMON_OBJ := $(COMMON_SRC:%.cpp=$(ASAN_BUILD)/%.o)
ASAN_SQLITE_OBJ := $(SQLITE_SRC:%.cpp=$(ASAN_BUILD)/%.o)
# One object per test file, so make -j compiles them in parallel.
ASAN_UNIT_OBJ   := $(UNIT_SRC:%.cpp=$(ASAN_BUILD)/%.o)
ASAN_SQLT_OBJ   := $(SQLT_SRC:%.cpp=$(ASAN_BUILD)/%.o)
ASAN_BINS := $(ASAN_BUILD)/unit_tests $(ASAN_BUILD)/lwwsync.so $(ASAN_BUILD)/sqlite_tests $(ASAN_BUILD)/convergence

asan: $(ASAN_BINS)

check-asan: asan
	tests/security/check_asan.sh

# Installs into the PostgreSQL of pg_config (PATH): see the script.
check-asan-pg:
	tests/security/check_asan_pg.sh

$(ASAN_BUILD)/.flags: FORCE
	@mkdir -p $(dir $@)
	@echo '$(ASAN_CXX) $(ASAN_CXXFLAGS)' | cmp -s - $@ || echo '$(ASAN_CXX) $(ASAN_CXXFLAGS)' >$@

$(ASAN_BUILD)/%.o: %.cpp $(ASAN_BUILD)/.flags
	@mkdir -p $(dir $@)
	$(ASAN_CXX) $(CPPFLAGS) $(ASAN_CXXFLAGS) -c $< -o $@

ifeq ($(WITH_LIBPQ),1)
$(ASAN_BUILD)/sqlite_ext/pg_transport.o: CPPFLAGS += -DLWWSYNC_WITH_LIBPQ -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
endif

$(ASAN_BUILD)/liblwwcore.a: $(ASAN_COMMON_OBJ)
	ar rcs $@ $^

$(ASAN_BUILD)/lwwsync.so: $(ASAN_COMMON_OBJ) $(ASAN_SQLITE_OBJ)
	$(ASAN_CXX) $(ASAN_FLAGS) -shared -o $@ $^ $(PQ_LIBS) $(NET_LIBS) -Wl,--no-undefined -Wl,-z,defs

$(ASAN_BUILD)/unit_tests: $(ASAN_UNIT_OBJ) $(ASAN_BUILD)/liblwwcore.a
	$(ASAN_CXX) $(ASAN_FLAGS) -o $@ $^ $(NET_LIBS) -lgtest -lgtest_main -pthread

# Loads $(ASAN_BUILD)/lwwsync.so at run time ($LWWSYNC_EXT): an ASan host for an ASan extension.
$(ASAN_SQLT_OBJ): CPPFLAGS += $(filter -D% -I%,$(HTTPLIB))
$(ASAN_BUILD)/sqlite_tests: $(ASAN_SQLT_OBJ) $(ASAN_BUILD)/common/base64.o
	$(ASAN_CXX) $(ASAN_FLAGS) -o $@ $^ -lsqlite3 $(filter-out -D% -I%,$(HTTPLIB)) -lgtest -lgtest_main -pthread

# As tests/convergence/Makefile builds it, with the sanitizers (the driver's
# SQLite-only program: no libpq, no pg_peer.h).
$(ASAN_BUILD)/convergence: tests/convergence/convergence.cpp tests/convergence/scenario.h \
		tests/convergence/peers.h tests/convergence/workload.h tests/common/sql_harness.h $(ASAN_BUILD)/.flags
	$(ASAN_CXX) $(ASAN_FLAGS) -std=c++17 -Wall -Wextra -o $@ $< -lsqlite3

-include $(ASAN_COMMON_OBJ:.o=.d) $(ASAN_SQLITE_OBJ:.o=.d) $(ASAN_UNIT_OBJ:.o=.d) $(ASAN_SQLT_OBJ:.o=.d)
