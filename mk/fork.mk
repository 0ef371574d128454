# fork() with live clients: Lua 5.4 embedded with the binding linked
# statically, children forked while the client's I/O thread works.
ifeq ($(LUA),lua5.4)
CTESTS += $(BUILD)/lua_fork

$(BUILD)/lua_fork: spec/c/lua_fork.c spec/c/test.h spec/c/lua_host.h spec/c/fake_broker.c spec/c/fake_broker.h $(LUA_OBJ) $(BUILD)/libzmqtt.a
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -I$(LUA_INC) -o $@ $< spec/c/fake_broker.c $(LUA_OBJ) \
	    $(BUILD)/libzmqtt.a -l$(LUA) $(LDLIBS)
endif
