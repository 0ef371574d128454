# Integrations (integration/*_spec.lua): OpenResty, LÖVE, luv, cqueues,
# several Lua states in one process, and the brokers RabbitMQ, ActiveMQ and
# aedes. They run with Lua 5.4's busted and drive
# other hosts, which load the LuaJIT build (build/luajit) or their own. The
# host fragments (love.mk, openresty.mk) add their packages to the list.
INTEGRATION_DEPS := $(MODULE)
INTEGRATION_PACKAGES += $(TEST_PACKAGES) luajit2 libluajit2-5.1-dev rabbitmq-server activemq \
                        libmqtt-client-java nodejs
PACKAGE_LISTS += integration

# aedes, the Node.js broker, from the npm registry (a pinned version).
AEDES := $(BUILD)/aedes/node_modules/aedes

$(AEDES): | deps-integration
	@mkdir -p $(BUILD)/aedes
	npm install --silent --no-audit --no-fund --prefix $(BUILD)/aedes aedes@0.51.3 >/dev/null

integration: deps-integration $(INTEGRATION_DEPS) $(AEDES)
	@$(MAKE) -s LUA=luajit all
	@BUSTED="$(BUSTED)" SPECS="integration/" ZMQTT_ROOT=$(CURDIR) sh spec/run-all.sh

.PHONY: integration
