# OpenResty (examples/openresty/): nginx with the Lua module, driven by
# integration/openresty_spec.lua and `make openresty` (nginx in the foreground
# with a private mosquitto; see examples/openresty/README.md).
PACKAGES += nginx libnginx-mod-http-lua procps

# Install the packages above even where the deps stamp predates this file.
$(BUILD)/.deps: mk/openresty.mk

openresty: $(BUILD)/.deps
	@$(MAKE) -s LUA=luajit all
	@sh examples/openresty/run.sh

.PHONY: openresty
