# OpenResty (examples/openresty/): nginx with the Lua module, driven by
# integration/openresty_spec.lua and `make openresty` (nginx in the foreground
# with a private mosquitto; see examples/openresty/README.md).
# The spec runs with the integrations; `make openresty` needs the LuaJIT build,
# nginx, and a private mosquitto whose port Lua 5.4's luasocket picks.
INTEGRATION_PACKAGES += nginx libnginx-mod-http-lua procps
OPENRESTY_PACKAGES    = nginx libnginx-mod-http-lua mosquitto lua5.4 lua-socket
PACKAGE_LISTS        += openresty

openresty: deps-openresty
	@$(MAKE) -s LUA=luajit all
	@sh examples/openresty/run.sh

.PHONY: openresty
