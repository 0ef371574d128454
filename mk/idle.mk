# make bench-idle: IDLE_CLIENTS idle connected clients (keepalive 60) in one
# Lua process against a private mosquitto (bench/idle.lua): RSS growth per
# client, threads, and the I/O loop's wake-ups per client per keepalive.
# Each client holds two descriptors: the limit is raised to what that needs,
# or as far as the hard limit allows (the bench says when it cut the count).
IDLE_CLIENTS ?= 20000
IDLE_THREADS ?= 1
IDLE_SECONDS ?= 65

.PHONY: bench-idle
bench-idle: deps-test $(MODULE)
	@need=$$(( 2 * $(IDLE_CLIENTS) + 256 )); \
	ulimit -n $$need 2>/dev/null || ulimit -n $$(ulimit -Hn); \
	IDLE_CLIENTS=$(IDLE_CLIENTS) IDLE_THREADS=$(IDLE_THREADS) IDLE_SECONDS=$(IDLE_SECONDS) \
	    $(LUA) bench/idle.lua
