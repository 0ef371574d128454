# Hostile brokers against a client with default settings: peak RSS and
# counters per flood (bench/floods.lua; the figures in README's guarantees).
.PHONY: bench-floods
bench-floods: deps-test $(MODULE)
	@ZMQTT_LUA=$(LUA) $(LUA) bench/floods.lua $(FLOODS)
