-- spec/31_fd_spec.lua: client:fd() for event loops stays readable while
-- anything is left to dispatch, also after a callback raised half-way
-- through a batch, and goes quiet once everything ran.

local helpers = require("helpers")
local mqtt = require("mqtt")
local socket = require("socket")

describe("client:fd() after a callback error", function()
    local broker, clients = helpers.with_broker(nil, "zfd")

    it("stays readable while the rest of the batch waits, then goes quiet", function()
        local c = clients:new()
        c:connect(helpers.HOST, 60, broker.port)
        local topic = helpers.unique("fd/t")
        assert(c:wait(c:subscribe(topic, 1), 5))
        local fd = c:fd()
        local pollable = { getfd = function() return fd end }
        local function readable(timeout)
            return #socket.select({ pollable }, nil, timeout) == 1
        end
        local got = {}
        c:on(mqtt.PUBLISH, function(_, d)
            got[#got + 1] = d.message.payload
            if d.message.payload == "1" then error("boom") end
        end)
        local p = clients:new()
        p:connect(helpers.HOST, 60, broker.port)
        for i = 1, 3 do assert(p:wait(p:publish(topic, tostring(i), 1), 5)) end
        -- The three messages are queued for c before its first dispatch.
        assert.is_true(readable(3))
        helpers.sleep(0.3)
        local ok, err = pcall(c.dispatch, c, 0)
        assert.is_false(ok)
        assert.matches("boom", tostring(err))
        assert.same({ "1" }, got)
        assert.is_true(readable(0), "the fd must wake the loop for the two messages left")
        assert.equal(2, c:dispatch(0))
        assert.same({ "1", "2", "3" }, got)
        assert.is_false(readable(0))
    end)
end)
