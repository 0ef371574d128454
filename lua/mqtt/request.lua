--- MQTT 5.0 request and response (extension): `client:request` publishes
-- with a response topic of the client's own and fresh correlation data and
-- dispatches until the matching response arrives; `client:respond` answers
-- a request. Adds its methods to the Client class; plain Lua over the
-- public methods.
-- @module mqtt.request

local core = require("mqtt.core")
local errors = require("mqtt.errors")
local checks = require("mqtt.checks")

local PT = core.packet_types
local new_error, raise, argerror = errors.new, errors.raise, errors.argerror
local monotonic = core.monotonic
local string_format = string.format

local M = {}

-- Both need MQTT 5.0's response_topic and correlation_data.
local function need_v5(self, fname)
    if self:protocol() == 4 or self._protocol_option == 4 then
        raise("invalid argument",
            fname .. ": request and response need MQTT 5.0; the client speaks MQTT 3.1.1")
    end
end

-- The properties of a request or a response: the caller's, copied, with ours.
local function with(props, fname, extra)
    if props ~= nil and type(props) ~= "table" then
        argerror(3, fname, "properties must be a table")
    end
    local t = {}
    for k, v in pairs(props or {}) do t[k] = v end
    for k, v in pairs(extra) do t[k] = v end
    return t
end

-- The client's response topic: options.response_topic, else the broker's
-- response_information followed by the client id, else zmqtt/response/<id>.
local function response_topic(self)
    local t = self._response_topic_option
    if t then return t end
    local info = self:server_properties().response_information
    if info then return info .. self:client_id() end
    return "zmqtt/response/" .. self:client_id()
end

-- Subscribes once, lazily, to the response topic (again after a reconnect,
-- which may have lost the session); the responses it brings are kept by
-- correlation data for the requests waiting on them. The request need not
-- wait for the SUBACK: the broker handles the SUBSCRIBE before the PUBLISH
-- that follows it on the same connection.
local function listen(self, qos)
    local r = self._requests
    if not r then
        r = { waiting = {} }
        self._requests = r
        self:on(PT.PUBLISH, function(_, data)
            local corr = data.message.properties.correlation_data
            if r.waiting[corr] == false then r.waiting[corr] = data.message end
        end, function(data)
            local m = data.message
            return m ~= nil and m.topic == r.topic and m.properties ~= nil and
                m.properties.correlation_data ~= nil
        end, 2 ^ 31 - 1) -- before any callback of the application
    end
    local reconnects = self:stats().reconnects
    if not r.topic or r.reconnects ~= reconnects then
        r.topic = response_topic(self)
        self:subscribe(r.topic, qos)
        r.reconnects = reconnects
    end
    return r
end

local counter = 0

--- Sends a request and waits for its response (MQTT 5.0), dispatching
-- meanwhile like `wait`.
-- @string topic where the request goes
-- @string[opt] payload
-- @tab[opt] opts `qos` (default 1), `timeout` (seconds, default 5),
-- `properties` (the request's other properties)
-- @treturn MQTTMessage the response
-- @treturn[2] nil
-- @treturn[2] MQTTError named "timeout" or "not connected"
function M.request(self, topic, payload, opts)
    need_v5(self, "request")
    if opts ~= nil and type(opts) ~= "table" then argerror(3, "request", "opts must be a table") end
    opts = opts or {}
    local qos = checks.int(opts.qos, 3, "request", "qos", 0, 2, nil) or 1
    local timeout = opts.timeout or 5
    if type(timeout) ~= "number" or timeout <= 0 then
        argerror(3, "request", "timeout must be a positive number of seconds")
    end
    if not self:is_connected() then
        return nil, new_error("not connected", "request: the client is not connected")
    end
    local deadline = monotonic() + timeout
    local r = listen(self, qos)
    counter = counter + 1
    local corr = string_format("%x-%x-%x", counter, math.random(0, 0x7fffffff), os.time())
    local props = with(opts.properties, "request",
        { response_topic = r.topic, correlation_data = corr })
    r.waiting[corr] = false
    local ok, perr = pcall(self.publish, self, topic, payload, qos, false, props)
    if not ok then
        r.waiting[corr] = nil
        error(perr, 2)
    end
    while not r.waiting[corr] do
        local left = deadline - monotonic()
        if left <= 0 then
            r.waiting[corr] = nil
            return nil, new_error("timeout",
                string_format("request: no response on %s within %g s", r.topic, timeout))
        end
        if not self:is_connected() and self:state() == "disconnected" then
            r.waiting[corr] = nil
            return nil, new_error("not connected", "request: the client disconnected")
        end
        self:dispatch(left)
    end
    local msg = r.waiting[corr]
    r.waiting[corr] = nil
    return msg
end

--- Answers a request (MQTT 5.0): publishes to its `response_topic` with its
-- `correlation_data`; nothing else of the request is copied.
-- @tparam MQTTMessage request the request as received
-- @string[opt] payload
-- @int[opt=0] qos
-- @tab[opt] properties the response's other properties
-- @treturn int mid
function M.respond(self, request, payload, qos, properties)
    need_v5(self, "respond")
    if type(request) ~= "table" then argerror(1, "respond", "request must be an MQTTMessage") end
    local p = request.properties
    local rt = p and p.response_topic
    if not rt then
        raise("invalid argument", "respond: the request has no response_topic")
    end
    return self:publish(rt, payload, qos, false,
        with(properties, "respond", { correlation_data = p.correlation_data }))
end

--- Adds request and respond to the Client class.
function M.install(Client)
    Client.request = M.request
    Client.respond = M.respond
end

return M
