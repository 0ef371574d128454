# Game engine and event-loop integrations: LÖVE (examples/love/), luv and
# cqueues (examples/eventloops/), and a C host with several Lua states
# (examples/embed/host.c), driven by integration/{love,eventloops,states}_spec.lua.
INTEGRATION_PACKAGES += love lua-luv lua-cqueues lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev \
                        lua5.3 liblua5.3-dev

# The host embeds Lua 5.4 and dlopens the Lua 5.4 build of mqtt/core.so
# through package.cpath, as any embedder would: it does not link the module.
EMBED_HOST := $(BUILD)/embed/host
export ZMQTT_EMBED_HOST := $(CURDIR)/$(EMBED_HOST)

$(EMBED_HOST): examples/embed/host.c | deps-integration
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(CFLAGS) -I/usr/include/lua5.4 -o $@ $< \
	    -llua5.4 $(EXTRA_LDFLAGS)

# The event-loop examples also run on Lua 5.1, 5.2 and 5.3 (luv and cqueues
# ship a module for each): build the module for them too.
EVENTLOOP_LUAS := lua5.1 lua5.2 lua5.3

integration-modules: | deps-integration
	@for v in $(EVENTLOOP_LUAS); do $(MAKE) -s LUA=$$v all || exit 1; done

integration: $(EMBED_HOST) integration-modules

.PHONY: integration-modules
