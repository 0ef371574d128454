# Out-of-memory tests (issue 4), run with the other C tests: test_oom drives
# the C API against the in-process broker of spec/c/fake_broker.c; lua_oom
# embeds Lua 5.4 with a failing allocator and links the binding statically.
FAKE_BROKER := spec/c/fake_broker.c spec/c/fake_broker.h

$(BUILD)/test_oom: spec/c/test_oom.c spec/c/test.h $(FAKE_BROKER) $(BUILD)/libzmqtt.a
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -o $@ $< spec/c/fake_broker.c $(BUILD)/libzmqtt.a $(LDLIBS)

# lua_oom needs a Lua whose allocator can be replaced, so Lua 5.4 builds only.
ifeq ($(LUA),lua5.4)
CTESTS += $(BUILD)/lua_oom

$(BUILD)/lua_oom: spec/c/lua_oom.c spec/c/test.h spec/c/lua_host.h $(FAKE_BROKER) $(LUA_OBJ) $(BUILD)/libzmqtt.a
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -I$(LUA_INC) -o $@ $< spec/c/fake_broker.c $(LUA_OBJ) \
	    $(BUILD)/libzmqtt.a -l$(LUA) $(LDLIBS)
endif

# Under valgrind the Lua allocator sweep of lua_oom would take ~25 s: there it
# tries every third failure point.
check-valgrind: export LUA_OOM_STRIDE ?= 3
