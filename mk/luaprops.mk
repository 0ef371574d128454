# The Lua binding's MQTT 5.0 property conversion (src/lua/props.c) tested
# from C: Lua 5.4 embedded with the binding linked statically runs
# spec/c/lua_props.lua against the codec's encoder and validation.
ifeq ($(LUA),lua5.4)
CTESTS += $(BUILD)/lua_props

$(BUILD)/lua_props: spec/c/lua_props.c spec/c/lua_props.lua spec/c/test.h spec/c/lua_host.h $(LUA_OBJ) $(BUILD)/libzmqtt.a
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -Isrc/lua -I$(LUA_INC) -o $@ $< $(LUA_OBJ) \
	    $(BUILD)/libzmqtt.a -l$(LUA) $(LDLIBS)
endif
