rockspec_format = "3.0"
package = "zmqtt"
version = "0.2.0-1"
source = {
    url = "git+https://github.com/zmqtt/zmqtt.git",
    tag = "v0.2.0",
}
description = {
    summary = "MQTT 3.1.1 client with a C core and the Zerynth-style API",
    detailed = [[
zmqtt is an MQTT 3.1.1 client whose core is C (sockets, MQTT framing, a
background I/O thread) with a Lua API after Zerynth's mqtt module:
mqtt.Client, on(command, fn, condition, priority), connect, publish,
subscribe, loop, dispatch.
]],
    homepage = "https://github.com/zmqtt/zmqtt",
    license = "MIT",
}
dependencies = {
    "lua >= 5.1",
}
external_dependencies = {
    MBEDTLS = { header = "mbedtls/ssl.h" },
    CARES = { header = "ares.h" },
    WSLAY = { header = "wslay/wslay.h" },
}
build = {
    type = "builtin",
    modules = {
        ["mqtt"] = "lua/mqtt/init.lua",
        ["mqtt.errors"] = "lua/mqtt/errors.lua",
        ["mqtt.checks"] = "lua/mqtt/checks.lua",
        ["mqtt.client"] = "lua/mqtt/client.lua",
        ["mqtt.dispatch"] = "lua/mqtt/dispatch.lua",
        ["mqtt.route"] = "lua/mqtt/route.lua",
        ["mqtt.request"] = "lua/mqtt/request.lua",
        ["mqtt.tls"] = "lua/mqtt/tls.lua",
        ["mqtt.cli"] = "lua/mqtt/cli.lua",
        ["mqtt.core"] = {
            sources = {
                "src/base/alloc.c",
                "src/base/clock.c",
                "src/base/status.c",
                "src/client/args.c",
                "src/client/buf.c",
                "src/client/client.c",
                "src/client/connect.c",
                "src/client/events.c",
                "src/client/heap.c",
                "src/client/io.c",
                "src/client/link.c",
                "src/client/loop.c",
                "src/client/persist.c",
                "src/client/send.c",
                "src/client/servers.c",
                "src/client/v5.c",
                "src/codec/decode.c",
                "src/codec/decode_broker.c",
                "src/codec/encode.c",
                "src/codec/header.c",
                "src/codec/props.c",
                "src/codec/tables.c",
                "src/codec/topic.c",
                "src/lua/core.c",
                "src/lua/props.c",
                "src/lua/proto.c",
                "src/lua/route.c",
                "src/lua/ssl_context.c",
                "src/session/qos.c",
                "src/session/session.c",
                "src/store/compact.c",
                "src/store/crc32c.c",
                "src/store/flush.c",
                "src/store/log.c",
                "src/store/recover.c",
                "src/store/store.c",
                "src/transport/endpoint.c",
                "src/transport/open.c",
                "src/transport/proxy.c",
                "src/transport/proxy_env.c",
                "src/transport/resolve.c",
                "src/transport/tcp.c",
                "src/transport/tls.c",
                "src/transport/tls_config.c",
                "src/transport/ws.c",
            },
            defines = { "_GNU_SOURCE" },
            incdirs = {
                "include", "src/base", "src/codec", "src/session", "src/store", "src/transport",
                "src/client", "src/lua", "$(MBEDTLS_INCDIR)", "$(CARES_INCDIR)",
                "$(WSLAY_INCDIR)",
            },
            libdirs = { "$(MBEDTLS_LIBDIR)", "$(CARES_LIBDIR)", "$(WSLAY_LIBDIR)" },
            libraries = { "cares", "wslay", "mbedtls", "mbedx509", "mbedcrypto", "pthread" },
        },
    },
    install = {
        bin = {
            ["zmqtt-pub"] = "bin/zmqtt-pub",
            ["zmqtt-sub"] = "bin/zmqtt-sub",
        },
    },
}
