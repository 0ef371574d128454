# make install: the Lua module, the command-line tools, and for C programs
# the header, the static library and a pkg-config file, without luarocks.
# PREFIX (default /usr/local) and DESTDIR as usual; LUA picks the Lua whose
# directories receive the module (share/lua/<ABI>/, lib/lua/<ABI>/).
#   make install PREFIX=/opt/zmqtt LUA=lua5.3
#   make uninstall PREFIX=/opt/zmqtt LUA=lua5.3
# The tools start with the install's own module paths, so they run from any
# PREFIX; a program needs LUA_PATH/LUA_CPATH only outside Lua's default ones
# (/usr/local is inside them).
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
INCLUDEDIR   ?= $(PREFIX)/include
LIBDIR       ?= $(PREFIX)/lib
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
LUA_LMOD     ?= $(PREFIX)/share/lua/$(LUA_ABI)
LUA_CMOD     ?= $(PREFIX)/lib/lua/$(LUA_ABI)
INSTALL      ?= install

LUA_MODULES  := $(wildcard lua/mqtt/*.lua)
CLI_TOOLS    := $(notdir $(wildcard bin/zmqtt-*))

# The tools' first lines: the interpreter the module was built for, then the
# install's module directories ahead of the default ones.
define tool_header
#!/usr/bin/env $(LUA)
package.path = "$(LUA_LMOD)/?.lua;$(LUA_LMOD)/?/init.lua;" .. package.path
package.cpath = "$(LUA_CMOD)/?.so;" .. package.cpath
endef

# A static library brings its own dependencies to the link, so Libs lists them.
define pkg_config
prefix=$(PREFIX)
includedir=$(INCLUDEDIR)
libdir=$(LIBDIR)

Name: zmqtt
Description: MQTT 3.1.1 client core: sockets, TLS, framing, a background I/O thread
Version: $(VERSION)
URL: https://github.com/zmqtt/zmqtt
Cflags: -I$${includedir}/zmqtt -pthread
Libs: $(strip -L$${libdir} -lzmqtt -lcares -lwslay -lmbedtls -lmbedx509 -lmbedcrypto -pthread $(EXTRA_LDFLAGS))
endef

install: export ZMQTT_TOOL_HEADER = $(tool_header)
install: export ZMQTT_PKG_CONFIG = $(pkg_config)
install: $(MODULE) $(BUILD)/libzmqtt.a
	$(INSTALL) -d $(DESTDIR)$(LUA_LMOD)/mqtt $(DESTDIR)$(LUA_CMOD)/mqtt $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(INCLUDEDIR)/zmqtt $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 644 $(LUA_MODULES) $(DESTDIR)$(LUA_LMOD)/mqtt/
	$(INSTALL) -m 755 $(MODULE) $(DESTDIR)$(LUA_CMOD)/mqtt/core.so
	@for t in $(CLI_TOOLS); do \
	    { printf '%s\n' "$$ZMQTT_TOOL_HEADER"; tail -n +2 bin/$$t; } >$(DESTDIR)$(BINDIR)/$$t && \
	    chmod 755 $(DESTDIR)$(BINDIR)/$$t && echo "installed $(DESTDIR)$(BINDIR)/$$t" || exit 1; \
	done
	$(INSTALL) -m 644 include/mqtt.h $(DESTDIR)$(INCLUDEDIR)/zmqtt/mqtt.h
	$(INSTALL) -m 644 $(BUILD)/libzmqtt.a $(DESTDIR)$(LIBDIR)/libzmqtt.a
	@printf '%s\n' "$$ZMQTT_PKG_CONFIG" >$(DESTDIR)$(PKGCONFIGDIR)/zmqtt.pc
	@echo "installed $(DESTDIR)$(PKGCONFIGDIR)/zmqtt.pc"

# Removes what install put there, and the directories it made that are left
# empty (those it shares with other software stay).
uninstall:
	rm -f $(addprefix $(DESTDIR)$(LUA_LMOD)/mqtt/,$(notdir $(LUA_MODULES))) \
	    $(DESTDIR)$(LUA_CMOD)/mqtt/core.so $(addprefix $(DESTDIR)$(BINDIR)/,$(CLI_TOOLS)) \
	    $(DESTDIR)$(INCLUDEDIR)/zmqtt/mqtt.h $(DESTDIR)$(LIBDIR)/libzmqtt.a \
	    $(DESTDIR)$(PKGCONFIGDIR)/zmqtt.pc
	@rmdir $(DESTDIR)$(LUA_LMOD)/mqtt $(DESTDIR)$(LUA_CMOD)/mqtt $(DESTDIR)$(INCLUDEDIR)/zmqtt \
	    2>/dev/null || true

.PHONY: install uninstall
