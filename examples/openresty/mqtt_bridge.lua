--- examples/openresty/mqtt_bridge.lua: zmqtt inside nginx (OpenResty).
-- Owns, per worker, the clients made in init_worker_by_lua (after the fork),
-- the ngx.timer.every callback that runs their callbacks with dispatch(0) and
-- closes them when the worker exits, and the HTTP handlers. One worker (the
-- owner) subscribes and stores what arrives in an ngx.shared dict, so every
-- worker can serve it. Must not block a worker: no connect(), no dispatch
-- with a timeout, disconnect() only while the worker exits.

local mqtt = require("mqtt")

local ngx = ngx
local M = {}

local DEFAULTS = {
    host = "127.0.0.1",         -- the broker
    port = 1883,
    keepalive = 30,
    client_id = "zmqtt-nginx",  -- the owner's id; publishers add "-pub-<pid>"
    subscribe = "zmqtt/in/#",   -- what the owner subscribes to
    qos = 1,
    dict = "zmqtt",             -- the lua_shared_dict holding messages and state
    keep = 1000,                -- messages kept for GET /messages
    interval = 0.05,            -- seconds between two dispatch(0) calls
    owner = 0,                  -- the worker (ngx.worker.id()) that subscribes
    max_queued = 10000,         -- publishes held while offline, then 503
    reconnect = { min = 0.5, max = 10 },
    disconnect_timeout = 2,     -- seconds a closing worker waits for acks
}

local conf          -- DEFAULTS overridden by start()'s options
local dict          -- ngx.shared[conf.dict]
local publisher     -- this worker's client for POST /publish
local subscriber    -- the owner's client, nil in other workers
local clients = {}  -- the clients above that exist
local stopped = false

---------------------------------------------------------------------------
-- Messages in the shared dict: "m:<seq>" holds one message, "seq" the
-- newest seq written (a hint: readers scan forward from it). Entries are
-- claimed with safe_add, so two writers (old and new owner during a reload)
-- never overwrite each other and nothing is evicted to make room.

local function pack(m)
    -- MQTT topics never contain NUL: it separates topic and payload.
    return string.char(48 + m.qos, m.retain and 49 or 48) .. m.topic .. "\0" .. m.payload
end

local function unpack_message(v)
    local sep = v:find("\0", 3, true)
    return {
        qos = v:byte(1) - 48,
        retain = v:byte(2) == 49,
        topic = v:sub(3, sep - 1),
        payload = v:sub(sep + 1),
    }
end

local function store(_, data)
    local v = pack(data.message)
    local seq = (dict:get("seq") or 0) + 1
    while true do
        local ok, err = dict:safe_add("m:" .. seq, v)
        if ok then break end
        if err ~= "exists" then
            dict:incr("dropped", 1, 0)
            ngx.log(ngx.ERR, "mqtt_bridge: message on ", data.message.topic, " dropped: ", err)
            return
        end
        seq = seq + 1
    end
    if seq > (dict:get("seq") or 0) then dict:safe_set("seq", seq) end
    dict:delete("m:" .. (seq - conf.keep))
end

-- Messages with seq > since, oldest first, and the seq to ask from next.
local function read_messages(since)
    local newest = dict:get("seq") or 0
    local i = math.max(since + 1, newest - conf.keep + 1, 1)
    -- Leading gaps are entries already deleted; after them, scan while present
    -- (the hint may lag behind a writer that just added one).
    while i <= newest and not dict:get("m:" .. i) do i = i + 1 end
    local list = {}
    while true do
        local v = dict:get("m:" .. i)
        if not v then break end
        local m = unpack_message(v)
        m.seq = i
        list[#list + 1] = m
        i = i + 1
    end
    return list, math.max(since, i - 1)
end

-- The owner's state, shown by GET /status: written only by the owner named in
-- "owner_pid", so an old owner closing during a reload cannot overwrite it.
local function set_owner_state(state)
    if dict:get("owner_pid") == ngx.worker.pid() then
        dict:safe_set("owner_state", state)
    end
end

---------------------------------------------------------------------------
-- Clients

local function new_client(id, clean)
    return mqtt.Client(id, clean, {
        max_queued = conf.max_queued,
        reconnect = conf.reconnect,
        disconnect_timeout = conf.disconnect_timeout,
        logger = function(level, text)
            if level ~= "debug" then ngx.log(ngx.INFO, "mqtt_bridge ", id, ": ", text) end
        end,
    })
end

-- loop(): automatic reconnects (also when this first attempt fails) and
-- on_message for every message; the connection is made in the background.
local function connect(c, on_message)
    c:loop(on_message)
    c:connect_async { host = conf.host, port = conf.port, keepalive = conf.keepalive }
end

-- The owner keeps one persistent session under a fixed id: across a reload
-- the new owner takes over the old one's subscription, and the broker keeps
-- QoS 1/2 messages published while neither is connected.
local function start_subscriber()
    local c = new_client(conf.client_id, false)
    dict:safe_set("owner_pid", ngx.worker.pid())
    set_owner_state("connecting")
    c:on(mqtt.CONNACK, function(_, d)
        if d.return_code ~= 0 then
            set_owner_state("connect failed: " .. tostring(d.error or d.return_code))
        elseif d.session_present then
            set_owner_state("subscribed")   -- the session kept the subscription
        else
            c:subscribe(conf.subscribe, conf.qos)
            set_owner_state("subscribing")
        end
    end)
    c:on(mqtt.SUBACK, function(_, d)
        set_owner_state(d.granted_qos[1] == 0x80 and "subscription refused" or "subscribed")
    end)
    c:on(mqtt.DISCONNECT, function() set_owner_state("disconnected") end)
    connect(c, store)
    return c
end

local function start_publisher()
    local c = new_client(("%s-pub-%d"):format(conf.client_id, ngx.worker.pid()), true)
    connect(c)
    return c
end

-- Closes this worker's clients: disconnect() sends what is queued (bounded by
-- disconnect_timeout) and joins the I/O thread; the last dispatch stores what
-- the owner received and acknowledged meanwhile. Idempotent.
function M.stop()
    if stopped then return end
    stopped = true
    for _, c in ipairs(clients) do
        local ok, err = pcall(function()
            c:disconnect()
            c:dispatch(0)
        end)
        if not ok then ngx.log(ngx.ERR, "mqtt_bridge: closing: ", tostring(err)) end
        c:close()
    end
    subscriber, publisher, clients = nil, nil, {}
    ngx.log(ngx.NOTICE, "mqtt_bridge: clients closed, I/O threads joined")
end

local function tick(premature)
    if premature or ngx.worker.exiting() then
        M.stop()
        return
    end
    for _, c in ipairs(clients) do
        local ok, err = pcall(c.dispatch, c, 0)
        if not ok then ngx.log(ngx.ERR, "mqtt_bridge: callback failed: ", tostring(err)) end
    end
end

--- Call from init_worker_by_lua: makes this worker's clients (they connect in
-- the background) and starts the dispatch timer. opts override DEFAULTS.
function M.start(opts)
    conf = {}
    for k, v in pairs(DEFAULTS) do conf[k] = v end
    for k, v in pairs(opts or {}) do
        if DEFAULTS[k] == nil then error("mqtt_bridge: unknown option '" .. k .. "'", 2) end
        conf[k] = v
    end
    dict = assert(ngx.shared[conf.dict], "mqtt_bridge: no lua_shared_dict " .. conf.dict)
    if (ngx.worker.id() or 0) == conf.owner then
        subscriber = start_subscriber()
        clients[#clients + 1] = subscriber
    end
    publisher = start_publisher()
    clients[#clients + 1] = publisher
    assert(ngx.timer.every(conf.interval, tick))
end

---------------------------------------------------------------------------
-- HTTP

local JSON_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\" }

local function json_string(s)
    return '"' .. s:gsub('[%c"\\]', function(ch)
        return JSON_ESCAPES[ch] or ("\\u%04x"):format(ch:byte())
    end) .. '"'
end

local function reply(status, body, content_type)
    ngx.status = status
    ngx.header["Content-Type"] = content_type or "application/json"
    ngx.print(body)
    return ngx.exit(status)
end

local function fail(status, message)
    return reply(status, '{"error":' .. json_string(message) .. "}\n")
end

local function request_body()
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if body then return body end
    local file = ngx.req.get_body_file()   -- larger than client_body_buffer_size
    if not file then return nil end
    local f = assert(io.open(file, "rb"))
    body = f:read("*a")
    f:close()
    return body
end

--- POST /publish?topic=T[&qos=0|1|2][&retain=1], body = payload. Answers 202
-- with the message id: the message is queued in this worker's client, which
-- sends it (or holds it while offline) without blocking the worker.
function M.http_publish()
    if ngx.req.get_method() ~= "POST" then return fail(405, "use POST") end
    local args = ngx.req.get_uri_args()
    local topic, qos = args.topic, tonumber(args.qos or "0")
    if type(topic) ~= "string" then return fail(400, "topic=... is required") end
    if not qos then return fail(400, "qos must be 0, 1 or 2") end
    if not publisher then return fail(503, "this worker is shutting down") end
    local retain = args.retain == "1" or args.retain == "true"
    local ok, mid = pcall(publisher.publish, publisher, topic, request_body(), qos, retain)
    if not ok then
        local name = type(mid) == "table" and mid.name
        return fail(name == "invalid argument" and 400 or 503, tostring(mid))
    end
    return reply(202, ('{"mid":%d,"worker":%d,"pid":%d,"connected":%s}\n'):format(
        mid, ngx.worker.id() or 0, ngx.worker.pid(), tostring(publisher:is_connected())))
end

--- GET /messages[?since=N][&format=text]: the messages stored after seq N.
-- JSON: {"last":L,"messages":[{"seq":,"topic":,"qos":,"retain":,"payload":base64}]};
-- poll again with since=L. format=text: one "seq topic payload" line each.
function M.http_messages()
    local args = ngx.req.get_uri_args()
    local list, last = read_messages(tonumber(args.since) or 0)
    local out = {}
    if args.format == "text" then
        for i, m in ipairs(list) do out[i] = ("%d %s %s\n"):format(m.seq, m.topic, m.payload) end
        return reply(200, table.concat(out), "text/plain")
    end
    for i, m in ipairs(list) do
        out[i] = ('{"seq":%d,"topic":%s,"qos":%d,"retain":%s,"payload":"%s"}'):format(
            m.seq, json_string(m.topic), m.qos, tostring(m.retain), ngx.encode_base64(m.payload))
    end
    return reply(200, ('{"last":%d,"worker":%d,"messages":[%s]}\n'):format(
        last, ngx.worker.id() or 0, table.concat(out, ",")))
end

--- GET /status: this worker and its client, and the owner's subscription.
function M.http_status()
    local fields = {
        '"worker":' .. (ngx.worker.id() or 0),
        '"pid":' .. ngx.worker.pid(),
        '"state":' .. json_string(publisher and publisher:state() or "closed"),
        '"owner_pid":' .. (dict:get("owner_pid") or 0),
        '"owner_state":' .. json_string(dict:get("owner_state") or "none"),
        '"last":' .. (dict:get("seq") or 0),
        '"dropped":' .. (dict:get("dropped") or 0),
    }
    return reply(200, "{" .. table.concat(fields, ",") .. "}\n")
end

return M
