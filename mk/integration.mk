# Integrations (integration/*_spec.lua): OpenResty, LÖVE, luv, cqueues,
# several Lua states in one process, and RabbitMQ's MQTT plugin. They run with Lua 5.4's busted and drive
# other hosts, which load the LuaJIT build (build/luajit) or their own. The
# host fragments (love.mk, openresty.mk) add their packages to the list.
INTEGRATION_DEPS := $(MODULE)
INTEGRATION_PACKAGES += $(TEST_PACKAGES) luajit2 libluajit2-5.1-dev rabbitmq-server
PACKAGE_LISTS += integration

integration: deps-integration $(INTEGRATION_DEPS)
	@$(MAKE) -s LUA=luajit all
	@BUSTED="$(BUSTED)" SPECS="integration/" ZMQTT_ROOT=$(CURDIR) sh spec/run-all.sh

.PHONY: integration
