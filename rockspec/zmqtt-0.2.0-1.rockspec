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
}
build = {
    type = "builtin",
    modules = {
        ["mqtt"] = "lua/mqtt/init.lua",
        ["mqtt.tls"] = "lua/mqtt/tls.lua",
        ["mqtt.cli"] = "lua/mqtt/cli.lua",
        ["mqtt.route"] = "lua/mqtt/route.lua",
        ["mqtt.core"] = {
            sources = {
                "src/alloc.c",
                "src/client.c",
                "src/client_buf.c",
                "src/client_connect.c",
                "src/client_events.c",
                "src/client_thread.c",
                "src/codec_decode.c",
                "src/codec_encode.c",
                "src/codec_header.c",
                "src/codec_util.c",
                "src/lua_core.c",
                "src/lua_route.c",
                "src/lua_tls.c",
                "src/session.c",
                "src/status.c",
                "src/tls_config.c",
                "src/transport_tcp.c",
                "src/transport_tls.c",
            },
            defines = { "_GNU_SOURCE" },
            incdirs = { "src", "$(MBEDTLS_INCDIR)" },
            libdirs = { "$(MBEDTLS_LIBDIR)" },
            libraries = { "mbedtls", "mbedx509", "mbedcrypto", "pthread" },
        },
    },
    install = {
        bin = {
            ["zmqtt-pub"] = "bin/zmqtt-pub",
            ["zmqtt-sub"] = "bin/zmqtt-sub",
        },
    },
}
