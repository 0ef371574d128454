# zmqtt: `make demo` and `make test` install what they need (Debian packages),
# build the C core and the Lua module, and run.

# LUA picks the interpreter the module is built for and tested with:
# lua5.4 (default), lua5.3, lua5.2, lua5.1 or luajit (OpenResty's LuaJIT 2.1).
LUA        ?= lua5.4
ifeq ($(LUA),luajit)
LUA_INC    ?= /usr/include/luajit-2.1
LUA_PKGS   := luajit2 libluajit2-5.1-dev
else ifeq ($(LUA),lua5.1)
LUA_INC    ?= /usr/include/lua5.1
LUA_PKGS   := lua5.1 liblua5.1-0-dev
else
LUA_INC    ?= /usr/include/$(LUA)
LUA_PKGS   := $(LUA) lib$(LUA)-dev
endif
CC         ?= cc
# Lua 5.4 builds into build/, every other version into build/<LUA>/.
ifeq ($(LUA),lua5.4)
BUILD      ?= build
else
BUILD      ?= build/$(LUA)
endif

# Sanitizer builds (make check): SAN=address,undefined or SAN=thread.
SAN        ?=
BUSTED     ?= $(LUA) /usr/bin/busted
ZMQTT_LUA  ?= $(LUA)
export ZMQTT_LUA ASAN_OPTIONS TSAN_OPTIONS
SPECS      ?= spec/

WARN       := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS     ?= -O2 -g
ifneq ($(SAN),)
CFLAGS     := -O1 -g -fno-omit-frame-pointer -fsanitize=$(SAN) -fno-sanitize-recover=all
EXTRA_LDFLAGS += -fsanitize=$(SAN)
endif
ALL_CFLAGS  = -std=c11 -D_GNU_SOURCE -fPIC -fvisibility=hidden -pthread $(WARN) $(CFLAGS) \
              $(EXTRA_CFLAGS)
LDLIBS      = -pthread -lcares -lwslay -lmbedtls -lmbedx509 -lmbedcrypto $(EXTRA_LDFLAGS)

# The release version. lua/mqtt/init.lua's _VERSION is its one source: the
# module reports it at run time, and luarocks builds never run make.
VERSION    := $(firstword $(shell sed -n 's/.*_VERSION = "\([^"]*\)".*/\1/p' lua/mqtt/init.lua))

# The Lua ABI the module is built for (share/lua/<ABI>, lib/lua/<ABI>):
# LuaJIT loads 5.1 modules.
ifeq ($(LUA),luajit)
LUA_ABI    := 5.1
else
LUA_ABI    := $(patsubst lua%,%,$(LUA))
endif

# Debian packages, by purpose: each target installs only the lists it uses
# (`make packages` prints them all). A fragment adds to its own list.
#   build  the compiler, Lua and its headers, mbedtls, c-ares (name resolution), wslay
#          (WebSocket framing): `make`
#   demo   build, and a private mosquitto (luasocket picks its free port)
#   test   build, busted and luasocket, mosquitto and its clients, websockify
#          (a WebSocket server in front of mosquitto, built without websockets;
#          spec/c/test_ws_broker.c), openssl (the TLS specs make their PKI), ca-certificates (the system bundle
#          must not trust the test CA), iproute2 (ss), luarocks, git and zip
#          (the rock and the release archives), pkgconf (a C program built
#          against the installed library), valgrind (the TLS leak spec),
#          tinyproxy and microsocks (the proxies of spec/c/test_proxy.c)
#   check  test, and valgrind; gcc brings the ASan, UBSan and TSan runtimes
#   fuzz   clang and libFuzzer (libclang-rt-14-dev), the headers the core needs
#   bench  build, mosquitto, luasocket, and libmosquitto for the baseline
CC_PACKAGES     := $(if $(findstring clang,$(notdir $(CC))),clang,gcc) libc6-dev
BUILD_PACKAGES   = $(CC_PACKAGES) $(LUA_PKGS) libmbedtls-dev libc-ares-dev libwslay-dev
DEMO_PACKAGES    = $(BUILD_PACKAGES) mosquitto lua-socket
TEST_PACKAGES    = $(BUILD_PACKAGES) lua-busted lua-socket mosquitto mosquitto-clients websockify openssl \
                   ca-certificates iproute2 luarocks git zip unzip pkgconf valgrind \
                   tinyproxy microsocks
CHECK_PACKAGES   = $(TEST_PACKAGES) valgrind
FUZZ_PACKAGES    = clang libclang-rt-14-dev libc6-dev libmbedtls-dev libc-ares-dev libwslay-dev
BENCH_PACKAGES   = $(BUILD_PACKAGES) mosquitto lua-socket libmosquitto-dev websockify
# Every purpose, for `make deps` and `make packages`; fragments add theirs.
PACKAGE_LISTS   := build demo test check fuzz bench

# The core's layers, bottom up; each compiles with the include paths of the
# layers below it and its own, so no file reaches up.
LAYERS     := base codec session store transport client
INC_base      := -Iinclude -Isrc/base
INC_codec     := $(INC_base) -Isrc/codec
INC_session   := $(INC_codec) -Isrc/session
INC_store     := $(INC_session) -Isrc/store
INC_transport := $(INC_codec) -Isrc/transport
INC_client    := $(INC_store) -Isrc/transport -Isrc/client
INC_lua       := -Iinclude -Isrc/lua -I$(LUA_INC)
# Every internal header, for the C tests and tools that look inside.
INC_ALL       := $(INC_client)
CORE_SRC   := $(foreach l,$(LAYERS),$(wildcard src/$(l)/*.c))
LUA_SRC    := $(wildcard src/lua/*.c)
CORE_OBJ   := $(CORE_SRC:src/%.c=$(BUILD)/obj/%.o)
LUA_OBJ    := $(LUA_SRC:src/%.c=$(BUILD)/obj/%.o)
CTESTS     := $(patsubst spec/c/%.c,$(BUILD)/%,$(wildcard spec/c/test_*.c))
MODULE     := $(BUILD)/mqtt/core.so

# Files whose arithmetic is all byte-level get the stricter conversion checks.
STRICT_OBJ := $(filter $(BUILD)/obj/codec/%.o $(BUILD)/obj/session/%.o $(BUILD)/obj/store/%.o,\
                $(CORE_OBJ))
$(STRICT_OBJ): WARN += -Wconversion -Wsign-conversion

export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;

.PHONY: all deps packages version demo test ctest bench fuzz check check-asan check-tsan \
        check-valgrind check-gc clean

all: $(MODULE)

# Further targets, one fragment per concern. Included here, after the first
# rule (all stays the default goal) and before the rules whose prerequisites
# list $(CTESTS), which make expands as it reads them.
include $(wildcard mk/*.mk)

# install_packages LIST: installs the Debian packages of LIST that are
# missing (apt-get as root; otherwise prints the command and fails). One
# dpkg-query per call, so every target checks its list each time it runs.
define install_packages
	@list="$(sort $(1))"; \
	missing=$$(dpkg-query -W -f='$${Package} $${db:Status-Abbrev}\n' $$list 2>/dev/null | \
	    awk -v want="$$list" '$$2 == "ii" { ok[$$1] = 1 } \
	        END { n = split(want, w, " "); for (i = 1; i <= n; i++) if (!(w[i] in ok)) printf " %s", w[i] }'); \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "installing:$$missing"; \
	        export DEBIAN_FRONTEND=noninteractive; \
	        apt="apt-get -y -q -o DPkg::Lock::Timeout=300"; \
	        $$apt install --no-install-recommends $$missing >/dev/null 2>&1 || \
	        { $$apt update >/dev/null && \
	          $$apt install --no-install-recommends $$missing >/dev/null; } || exit 1; \
	    else \
	        echo "missing Debian packages; run:"; \
	        echo "  sudo apt-get install -y --no-install-recommends$$missing"; exit 1; \
	    fi; \
	fi
endef

# A purpose's list: purpose dist-test is DIST_TEST_PACKAGES.
packages_of = $($(shell echo $(1) | tr a-z- A-Z_)_PACKAGES)

# deps-<purpose> installs that purpose's list; deps installs every list.
deps-%:
	$(if $(filter $*,$(PACKAGE_LISTS)),,$(error no package list "$*": one of $(PACKAGE_LISTS)))
	$(call install_packages,$(call packages_of,$*))

deps: $(addprefix deps-,$(PACKAGE_LISTS))

# Prints the release version.
version:
	@echo $(VERSION)

# Prints each list, one line per purpose.
packages:
	@$(foreach p,$(PACKAGE_LISTS),printf '%-12s %s\n' "$(p):" "$(sort $(call packages_of,$(p)))";)

# layer_of: the layer of an object, from its folder (build/obj/<layer>/x.o).
layer_of = $(notdir $(patsubst %/,%,$(dir $(1))))

$(BUILD)/obj/%.o: src/%.c $(wildcard include/*.h src/*/*.h) | deps-build
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(INC_$(call layer_of,$@)) -c $< -o $@

$(BUILD)/libzmqtt.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(MODULE): $(LUA_OBJ) $(BUILD)/libzmqtt.a
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $(LUA_OBJ) $(BUILD)/libzmqtt.a $(LDLIBS)

$(BUILD)/test_%: spec/c/test_%.c spec/c/test.h $(BUILD)/libzmqtt.a
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -o $@ $< $(BUILD)/libzmqtt.a $(LDLIBS)

# A C program on the public header alone (no Lua), run by spec/95_c_api_spec.lua.
$(BUILD)/c_client: examples/c_client.c include/mqtt.h $(BUILD)/libzmqtt.a
	$(CC) $(ALL_CFLAGS) -Iinclude -o $@ $< $(BUILD)/libzmqtt.a $(LDLIBS)

ctest: deps-build $(CTESTS)
	@for t in $(CTESTS); do $$t || exit 1; done

test: deps-test $(MODULE) $(CTESTS) $(BUILD)/c_client
	@BUSTED="$(BUSTED)" SPECS="$(SPECS)" ZMQTT_C_CLIENT=$(CURDIR)/$(BUILD)/c_client \
	    sh spec/run-all.sh $(CTESTS)

# The C tests and the specs under ASan+UBSan and under TSan, run by a Lua
# interpreter built with the same sanitizer (spec/tools/sanlua.c), and valgrind
# memcheck on the C tests and the publish/subscribe specs.
VALGRIND   = valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite

$(BUILD)/lua: spec/tools/sanlua.c | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(LUA_INC) -o $@ $< -l$(LUA) $(LDLIBS)

# Two pairs side by side (the specs mostly wait on sockets, so a pair shares
# the two cores without crowding): ASan with TSan, then valgrind with the two
# collector modes. Each pass's log is printed whole when it ends.
SIDE_BY_SIDE = pids=""; for t in $(1); do \
	    $(MAKE) -s $$t >$(BUILD)/$$t.log 2>&1 & pids="$$pids $$!:$$t"; \
	done; \
	rc=0; for p in $$pids; do \
	    wait $${p%%:*} || rc=1; \
	    echo "== $${p\#*:}:"; cat $(BUILD)/$${p\#*:}.log; \
	done; exit $$rc

# What valgrind and the collector passes share is built first, once.
check: deps-check $(MODULE) $(CTESTS) $(BUILD)/c_client
	@$(call SIDE_BY_SIDE,check-asan check-tsan)
	@$(call SIDE_BY_SIDE,check-valgrind check-gc)

# The specs again with a collector that never rests, so __gc and __close run
# all the time: incremental with no pause, and generational, side by side
# (each mostly waits on sockets), each printing its log when done.
GC_MODES := incremental:'collectgarbage("incremental", 0, 400, 6)' \
            generational:'collectgarbage("generational", 1, 100)'

check-gc: deps-check $(MODULE) $(CTESTS) $(BUILD)/c_client
	@pids=""; for m in $(GC_MODES); do \
	    name=$${m%%:*}; \
	    LUA_INIT_5_4="$${m#*:}" $(MAKE) -s test >$(BUILD)/check-gc-$$name.log 2>&1 & \
	    pids="$$pids $$!:$$name"; \
	done; \
	rc=0; for p in $$pids; do \
	    wait $${p%%:*} || rc=1; \
	    echo "== check-gc, $${p#*:} collector:"; cat $(BUILD)/check-gc-$${p#*:}.log; \
	done; exit $$rc

check-asan:
	$(MAKE) build/asan/lua test BUILD=build/asan SAN=address,undefined \
	    BUSTED="$(CURDIR)/build/asan/lua /usr/bin/busted" ZMQTT_LUA=$(CURDIR)/build/asan/lua \
	    ASAN_OPTIONS=abort_on_error=1

check-tsan:
	$(MAKE) build/tsan/lua test BUILD=build/tsan SAN=thread \
	    BUSTED="$(CURDIR)/build/tsan/lua /usr/bin/busted" ZMQTT_LUA=$(CURDIR)/build/tsan/lua \
	    TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0

check-valgrind: deps-check $(MODULE) $(CTESTS)
	@for t in $(CTESTS); do $(VALGRIND) $$t >/dev/null || { echo "valgrind: $$t"; exit 1; }; done
	$(MAKE) test SPECS=spec/20_pubsub_spec.lua BUSTED="$(VALGRIND) $(LUA) /usr/bin/busted"

demo: deps-demo $(MODULE)
	@LUA="$(LUA)" sh examples/run-demo.sh

clean:
	rm -rf $(BUILD)

# Benchmarks (bench/): our fake broker, the libmosquitto baseline, and the
# orchestrator that runs zmqtt and libmosquitto in alternation; see README.
BENCH_BIN    := $(BUILD)/bench/fakebroker $(BUILD)/bench/mosq_bench $(BUILD)/bench/alloc_bench
BENCH_CFLAGS  = -std=c11 -D_GNU_SOURCE -O2 -pthread $(WARN)

$(BUILD)/bench/fakebroker: bench/fakebroker.c | deps-bench
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lmbedcrypto

$(BUILD)/bench/mosq_bench: bench/mosq_bench.c | deps-bench
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lmosquitto

# The core's allocation counter: its hooks are internal, so it links the archive.
$(BUILD)/bench/alloc_bench: bench/alloc_bench.c include/mqtt.h $(BUILD)/libzmqtt.a | deps-bench
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -o $@ $< $(BUILD)/libzmqtt.a $(LDLIBS)

bench: deps-bench $(MODULE) $(BENCH_BIN)
	@BENCH_BIN=$(CURDIR)/$(BUILD)/bench LUA=$(LUA) $(LUA) bench/run.lua

# libFuzzer targets (clang): each runs FUZZ_SECONDS over its committed corpus
# in spec/fuzz/corpus/; a crash is saved there as a regression seed.
FUZZ_SECONDS ?= 10

fuzz: deps-fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh spec/fuzz/run.sh
