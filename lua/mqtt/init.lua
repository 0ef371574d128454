--- zmqtt: an MQTT 3.1.1 client with a C core and the Zerynth-style API.
-- This half owns what Lua does best: argument checking with clear errors,
-- the error values, MQTTMessage, and the priority-ordered dispatcher that
-- runs conditions and callbacks in the thread that owns the Lua state.
--
-- The background I/O thread never calls Lua: callbacks run when the
-- application dispatches (`Client:dispatch`, `Client:wait`, `mqtt.dispatch`,
-- `mqtt.sleep`, `mqtt.run`). Misuse raises at once an `MQTTError` named
-- "invalid argument" or "bad state"; runtime failures raise the error kinds
-- below.
-- @module mqtt
-- @usage
-- local mqtt = require("mqtt")
-- local client = mqtt.Client("sensor-1")
-- client:connect("localhost", 60)
-- client:loop(function(c, data) print(data.message.topic, data.message.payload) end)
-- client:subscribe("sensors/#", 1)
-- client:wait(client:publish("sensors/temp", "21.5", 1), 5)
-- mqtt.sleep(2)  -- dispatches the messages that arrive meanwhile
-- client:disconnect()

-- This file is the facade: the constants (their values from the C core) and
-- what the modules below export, under the names of the API. Nothing else
-- lives here; each module requires only those below it:
--   mqtt.core      C: the client, events, topics, TLS contexts, the C facts
--   mqtt.errors    error kinds and values
--   mqtt.checks    argument checks
--   mqtt.route     the order of one command's specific callbacks
--   mqtt.dispatch  MQTTMessage, on/off, conditions, dispatch, wait, sleep, run
--   mqtt.client    the Client class (takes on/off/dispatch/wait from dispatch)
--   mqtt.tls       ssl_context

local core = require("mqtt.core")
local errors = require("mqtt.errors")
local dispatch = require("mqtt.dispatch")
local client = require("mqtt.client")

local PT, PROTOCOLS = core.packet_types, core.protocols

local mqtt = { _VERSION = "0.2.0" }

--- Packet types.
-- The MQTT packet-type values, the `command` of `Client:on` and `Client:off`.
-- CONNACK and DISCONNECT are extensions. What each callback's `data` holds is
-- listed with each constant and under `data`.
-- @section constants

--- 0x20, extension: after every connect and reconnect, successful or not;
-- `data.session_present`, `data.return_code` (0: accepted; -1: no CONNACK
-- came) and, when it failed, `data.error`.
mqtt.CONNACK = PT.CONNACK
--- 0x30: a message arrived; `data.message` at QoS 0 and 1, only `data.mid` at
-- QoS 2 (its message is delivered once, with PUBREL).
mqtt.PUBLISH = PT.PUBLISH
--- 0x40: a QoS 1 publish was acknowledged; `data.mid`. A QoS 2 publish that
-- the broker acknowledged with PUBACK (it took it as QoS 1: delivered at least
-- once) completes here too, with `data.downgraded = true`.
mqtt.PUBACK = PT.PUBACK
--- 0x50: the broker received a QoS 2 publish; `data.mid`.
mqtt.PUBREC = PT.PUBREC
--- 0x60: a QoS 2 message is released, exactly once; `data.message`, `data.mid`.
mqtt.PUBREL = PT.PUBREL
--- 0x70: a QoS 2 publish is complete; `data.mid`.
mqtt.PUBCOMP = PT.PUBCOMP
--- 0x90: a subscription was answered; `data.mid`, `data.granted_qos`.
mqtt.SUBACK = PT.SUBACK
--- 0xB0: an unsubscription was answered; `data.mid`.
mqtt.UNSUBACK = PT.UNSUBACK
--- 0xC0: the ping the client sends; a broker never sends one.
mqtt.PINGREQ = PT.PINGREQ
--- 0xD0: the broker answered a keepalive ping.
mqtt.PINGRESP = PT.PINGRESP
--- 0xE0, extension: the connection was lost or closed; `data.error` when it
-- was not asked for.
mqtt.DISCONNECT = PT.DISCONNECT
--- 0xF0, MQTT 5.0: the broker's AUTH in an enhanced authentication
-- (`reason_code` 0x18 continue, 0x00 a re-authentication's success).
mqtt.AUTH = PT.AUTH

--- The `data` table a callback receives (`fn(client, data)`); which fields
-- are set depends on the command (see each constant).
-- @field return_code 0 for compatibility; for CONNACK the broker's return code
-- @field message an `MQTTMessage` (PUBLISH at QoS 0 and 1, PUBREL); under
-- MQTT 5.0 `message.properties` holds the message's properties (absent when
-- it had none)
-- @field mid the packet's message id (acknowledgements, PUBLISH at QoS 2, PUBREL)
-- @field granted_qos SUBACK: a list, one entry per requested filter; 0x80 means
-- refused (under 5.0 the refusal's reason code, e.g. 0x87)
-- @field reason_codes SUBACK (the same list as `granted_qos`) and UNSUBACK
-- (MQTT 5.0): one reason code per filter
-- @field reason_code PUBACK, PUBREC, PUBREL, PUBCOMP, CONNACK, and DISCONNECT
-- sent by the broker: the packet's reason code (0 under 3.1.1 acks)
-- @field reason the name of `reason_code` in that packet, in lower case
-- ("success", "no matching subscribers", "not authorized")
-- @field properties MQTT 5.0: the packet's properties, `{name = value}`
-- (absent when it had none); `user_property` is a list of `{name, value}`
-- @field session_present CONNACK: whether the broker kept a session
-- @field downgraded PUBACK: true when it completes a QoS 2 publish the broker took as QoS 1
-- @field error CONNACK and DISCONNECT: an error value, when the connection failed or was lost
-- @table data

--- Protocol levels (extension), for the `protocol` option of `Client`.
-- @section protocols

--- 4: MQTT 3.1.1, the default.
mqtt.MQTTv311 = PROTOCOLS.MQTTv311
--- 5: MQTT 5.0.
mqtt.MQTTv5 = PROTOCOLS.MQTTv5

-- Errors (mqtt.errors).
mqtt.MQTTError = errors.MQTTError
mqtt.MQTTConnectionError = errors.MQTTConnectionError
mqtt.MQTTProtocolError = errors.MQTTProtocolError
mqtt.is_error = errors.is_error

-- Messages, topics and running callbacks (mqtt.dispatch).
mqtt.MQTTMessage = dispatch.MQTTMessage
mqtt.topic_matches = dispatch.topic_matches
mqtt.topic_filter = dispatch.topic_filter
mqtt.reason_name = dispatch.reason_name
mqtt.dispatch = dispatch.dispatch
mqtt.sleep = dispatch.sleep
mqtt.run = dispatch.run

-- Clients (mqtt.client).
mqtt.Client = client.new
mqtt.Client_class = client.Client

--- The clock and TLS contexts (extension).
-- @section more

--- Seconds from a monotonic clock (extension), the clock timeouts use.
-- @function monotonic
-- @treturn number
mqtt.monotonic = core.monotonic

--- Sets how many I/O threads serve this process's clients (extension): one
-- by default; clients spread over them. Only before the first client exists
-- (raises MQTTError "bad state" otherwise).
-- @function io_threads
-- @int n from 1 to 16
mqtt.io_threads = core.io_threads

--- What the process's I/O loop is doing (extension).
-- @function io_stats
-- @treturn table `threads` (I/O threads running), `clients` (clients they
-- serve), `wakeups` (times a thread woke up), `services` (client turns)
mqtt.io_stats = core.io_stats

--- Removes the store `options.store` kept for a client id (extension):
-- its messages are gone. Nothing to remove is no error; a store that a
-- client holds (this process or another) raises MQTTError "bad state".
-- @function store_clear
-- @string path the store directory
-- @string client_id
-- @treturn boolean true
function mqtt.store_clear(path, client_id)
    if type(path) ~= "string" or path == "" then
        errors.argerror(1, "store_clear", "path must be a directory path")
    end
    if type(client_id) ~= "string" or client_id == "" then
        errors.argerror(2, "store_clear", "client_id must be a non-empty string")
    end
    local ok, name, msg = core.store_clear(path, client_id)
    if not ok then errors.raise(name, msg) end
    return true
end

--- A TLS context for `connect`'s `ssl_ctx` (extension of Zerynth's ssl_ctx).
-- Files are read at once: a missing file, a wrong `key_password` or an unknown
-- option raises here, naming it. Contexts are immutable and may be shared.
-- @function ssl_context
-- @tab[opt] opts every field optional:
-- @string[opt] opts.cafile CA certificates (PEM or DER file); without any CA,
-- the system's bundle
-- @string[opt] opts.capath a directory of CA certificates
-- @string[opt] opts.cadata CA certificates as PEM text
-- @string[opt] opts.certfile the client's certificate chain
-- @string[opt] opts.keyfile its private key
-- @string[opt] opts.certdata the client's certificate as PEM text
-- @string[opt] opts.keydata its private key as PEM text
-- @string[opt] opts.key_password for an encrypted private key
-- @string[opt] opts.server_name the name for SNI and verification instead of
-- the host
-- @bool[opt=true] opts.verify check the broker's chain and host name (its DNS
-- names, or its IP addresses when connecting to one); off only when false
-- @tab[opt] opts.alpn protocol names, e.g. `{"mqtt"}`
-- @string[opt="tls1.2"] opts.min_version "tls1.2" or "tls1.3"
-- @string[opt] opts.psk a pre-shared key as hex text (as mosquitto's tools take it)
-- @string[opt] opts.psk_identity
-- @return a context
-- @raise MQTTError "invalid argument" naming the option or file
-- @usage local ctx = mqtt.ssl_context{cafile = "ca.pem", certfile = "me.crt", keyfile = "me.key"}
-- client:connect("broker.example", 60, 8883, ctx)
mqtt.ssl_context = require("mqtt.tls").ssl_context

return mqtt
