-- zmqtt over TLS: connect to a TLS broker, verify it against a CA file,
-- subscribe, publish at QoS 1 and print what comes back.
-- Usage: lua5.4 examples/tls.lua host port cafile [certfile keyfile [key_password]]
--   e.g. lua5.4 examples/tls.lua test.mosquitto.org 8883 mosquitto.org.crt
-- The broker's certificate must be for `host` (a DNS name, or an IP-address
-- entry when host is an address); certfile/keyfile add a client certificate
-- for brokers that require one (mosquitto's require_certificate true).
local mqtt = require("mqtt")

local host, port, cafile = arg[1], tonumber(arg[2] or ""), arg[3]
if not (host and port and cafile) then
    io.stderr:write("usage: lua5.4 examples/tls.lua host port cafile [certfile keyfile [key_password]]\n")
    os.exit(2)
end

-- One context can serve any number of clients; files are read here, so a
-- missing file or a wrong key_password raises now, naming the file.
local ctx = mqtt.ssl_context {
    cafile = cafile,
    certfile = arg[4],
    keyfile = arg[5],
    key_password = arg[6],
    alpn = { "mqtt" },
    -- verify = true is the default: chain and host name are checked.
    -- server_name = "broker.example.com",  -- when the certificate names
    --                                       -- something other than `host`
}

local client = mqtt.Client("zmqtt-tls-example-" .. os.time(), true)
local topic = "zmqtt/example/tls/" .. os.time()

-- A failed handshake raises MQTTConnectionError saying why, in words
-- ("certificate not trusted (unknown CA)", "host name mismatch: ...").
local ok, err = pcall(client.connect, client, host, 30, port, ctx)
if not ok then
    io.stderr:write("connect failed: " .. tostring(err) .. "\n")
    os.exit(1)
end
print(("connected to %s port %d over TLS"):format(host, port))

local received
client:loop(function(_, data)
    print("received: " .. tostring(data.message))
    received = data.message
end)
client:subscribe(topic, 1)
mqtt.sleep(0.2) -- let the SUBACK arrive before publishing

local acked
local mid = client:publish(topic, "hello over TLS", 1)
-- Callbacks run only inside dispatch/sleep, so registering after publish is safe.
client:on(mqtt.PUBACK, function(_, data)
    print("PUBACK for mid " .. data.mid)
    acked = true
end, function(data) return data.mid == mid end)

local deadline = mqtt.monotonic() + 5
while not (received and acked) and mqtt.monotonic() < deadline do
    mqtt.dispatch(0.1)
end

client:disconnect()
client:close()
if not received then
    io.stderr:write("no message came back within 5 s\n")
    os.exit(1)
end
