# lwwsync — top-level build.
#   make            the SQLite extension (lwwsync.so) and the core library
#   make test       every test suite (unit, SQLite functions, randomized convergence)
#   make demo       a Postgres server, the HTTP gateway and two SQLite devices converging
#   make bench      the benchmark (never part of the tests)
#   make install    the Postgres extension (PGXS), lwwsync.so and lwwsync-server under PREFIX
#   make installcheck  the Postgres suites against the installed extension
#   make format / format-check   clang-format the tree (.clang-format) / check it is
#   make fuzz / check-asan / check-asan-pg   fuzzing and sanitizer runs (tests/security/README.md)
# pg_ext/ (PGXS) and server/ have their own Makefiles, driven from here.

CXX      ?= g++
CXXFLAGS ?= -O2 -g
CXXFLAGS += -std=c++17 -fPIC -Wall -Wextra -fvisibility=hidden
CPPFLAGS += -MMD -MP
include version.mk
CPPFLAGS += $(VERSION_FLAGS)
BUILD    := build

COMMON_SRC := $(wildcard common/*.cpp)
SQLITE_SRC := $(wildcard sqlite_ext/*.cpp)
COMMON_OBJ := $(COMMON_SRC:%.cpp=$(BUILD)/%.o)
SQLITE_OBJ := $(SQLITE_SRC:%.cpp=$(BUILD)/%.o)

UNIT_SRC   := $(wildcard tests/unit/*.cpp)
SQLT_SRC   := $(wildcard tests/sqlite/*.cpp)

.PHONY: all deps test check demo bench clean pg pg-install server install installcheck format format-check

all: lwwsync.so $(BUILD)/liblwwcore.a server

# The HTTP gateway, server/lwwsync-server (its own Makefile), linked with
# the core library built here.
server: $(BUILD)/liblwwcore.a
	$(MAKE) -C server

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/liblwwcore.a: $(COMMON_OBJ)
	ar rcs $@ $^

# libpq gives SQLite clients lww_sync('postgresql://…'); build with
# WITH_LIBPQ=0 for clients without it (Android, embedded).
# libcurl, zlib and libcrypto (SHA-256 of node keys): lww_sync('http(s)://…') in both engines.
NET_LIBS := -lcurl -lz -lcrypto
WITH_LIBPQ ?= 1
ifeq ($(WITH_LIBPQ),1)
$(BUILD)/sqlite_ext/pg_transport.o: CPPFLAGS += -DLWWSYNC_WITH_LIBPQ -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
PQ_LIBS := -lpq
endif

# The extension reaches SQLite only through the sqlite3_api table: no -lsqlite3.
lwwsync.so: $(COMMON_OBJ) $(SQLITE_OBJ)
	$(CXX) -shared -o $@ $^ $(PQ_LIBS) $(NET_LIBS) -Wl,--no-undefined -Wl,-z,defs

$(BUILD)/unit_tests: $(UNIT_SRC) $(BUILD)/liblwwcore.a
	$(CXX) $(CXXFLAGS) -o $@ $(UNIT_SRC) $(BUILD)/liblwwcore.a $(NET_LIBS) -lgtest -lgtest_main -pthread

# The HTTP client tests serve lww_exchange in-process with cpp-httplib.
HTTPLIB := $(shell pkg-config --cflags --libs cpp-httplib 2>/dev/null || echo -lcpp-httplib)
# The tests read change sets' bytes with the core's base64.
$(BUILD)/sqlite_tests: $(SQLT_SRC) $(wildcard tests/sqlite/*.h tests/common/*.h) common/base64.cpp lwwsync.so
	$(CXX) $(CXXFLAGS) -o $@ $(SQLT_SRC) common/base64.cpp -lsqlite3 $(HTTPLIB) -lgtest -lgtest_main -pthread

tests/convergence/convergence: lwwsync.so $(wildcard tests/convergence/*.cpp tests/convergence/*.h tests/common/*.h)
	$(MAKE) -C tests/convergence all

# Installs missing Debian packages (sudo when not root), then builds.
deps:
	scripts/deps.sh

# The README's two commands: `make demo` and `make test`.
test: deps
	$(MAKE) check

check: all $(BUILD)/unit_tests $(BUILD)/sqlite_tests tests/convergence/convergence pg-install
	tests/run_all.sh

demo: deps
	$(MAKE) lwwsync.so server pg-install
	demo/demo.sh

# The PostgreSQL extension (PGXS, in pg_ext/); installing needs root.
pg:
	$(MAKE) -C pg_ext

pg-install: pg
	$(if $(filter 0,$(shell id -u)),,sudo) $(MAKE) -C pg_ext install

# PGXS's convention: `make && sudo make install`, then `make installcheck`.
# Installs the Postgres extension where pg_config says, lwwsync.so (for
# SQLite's .load) under $(PREFIX)/lib/lwwsync and the gateway under
# $(PREFIX)/bin; DESTDIR stages all three. Nothing here calls sudo.
PREFIX ?= /usr/local
install: all pg
	$(MAKE) -C pg_ext install
	install -d $(DESTDIR)$(PREFIX)/lib/lwwsync $(DESTDIR)$(PREFIX)/bin
	install -m 755 lwwsync.so $(DESTDIR)$(PREFIX)/lib/lwwsync/lwwsync.so
	install -m 755 server/lwwsync-server $(DESTDIR)$(PREFIX)/bin/lwwsync-server

# The Postgres suites (pg_regress, isolation) against the installed extension.
installcheck:
	LWWSYNC_SKIP_INSTALL=1 scripts/pg_test.sh

# The tree is kept formatted by .clang-format (clang-format 14, Debian 12).
FORMATTED = $(shell git ls-files '*.cpp' '*.h' '*.c' 2>/dev/null)
format:
	clang-format -i $(FORMATTED)
format-check:
	clang-format --dry-run --Werror $(FORMATTED)

bench: lwwsync.so
	$(MAKE) -C bench bench

clean:
	rm -rf $(BUILD) lwwsync.so
	$(MAKE) -C server clean
	-$(MAKE) -C tests/convergence clean
	-$(MAKE) -C pg_ext clean
	-$(MAKE) -C bench clean

-include $(COMMON_OBJ:.o=.d) $(SQLITE_OBJ:.o=.d)

# make fuzz, make asan, make check-asan, make check-asan-pg
include tests/security/security.mk
