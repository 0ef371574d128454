# The spec suite against the module as luarocks installs it: the rock is built
# from a copy of the sources into a private tree, and only that tree is on
# LUA_PATH/LUA_CPATH (plus spec/ for the helpers). LuaJIT uses the 5.1 rock.
ROCK_TREE  := $(CURDIR)/$(BUILD)/rock-tree

# luarocks builds LuaJIT's rock as a Lua 5.1 one, against lua5.1's headers.
ROCK_PACKAGES  = $(TEST_PACKAGES) $(if $(filter luajit,$(LUA)),lua5.1 liblua5.1-0-dev)
PACKAGE_LISTS += rock

test-rock: deps-rock $(BUILD)/c_client
	@rm -rf $(ROCK_TREE) $(BUILD)/rock-src && mkdir -p $(BUILD)/rock-src
	@cp -r include src lua bin rockspec $(BUILD)/rock-src/
	@cd $(BUILD)/rock-src && luarocks --lua-version=$(LUA_ABI) --tree=$(ROCK_TREE) \
	    make rockspec/zmqtt-scm-1.rockspec >$(CURDIR)/$(BUILD)/rock.log 2>&1 || \
	    { cat $(CURDIR)/$(BUILD)/rock.log; echo "0 passed, 1 failed"; exit 1; }
	@echo "installed the rock for $(LUA) into $(ROCK_TREE)"
	@LUA_PATH="$(ROCK_TREE)/share/lua/$(LUA_ABI)/?.lua;$(ROCK_TREE)/share/lua/$(LUA_ABI)/?/init.lua;$(CURDIR)/spec/?.lua;;" \
	    LUA_CPATH="$(ROCK_TREE)/lib/lua/$(LUA_ABI)/?.so;;" ZMQTT_ROCK_TREE=$(ROCK_TREE) \
	    BUSTED="$(BUSTED)" SPECS="$(SPECS)" ZMQTT_C_CLIENT=$(CURDIR)/$(BUILD)/c_client \
	    sh spec/run-all.sh

.PHONY: test-rock
