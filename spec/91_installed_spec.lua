-- Under `make test-rock` the suite runs against the module luarocks
-- installed (ZMQTT_ROCK_TREE): check that this is what require loaded.
local tree = os.getenv("ZMQTT_ROCK_TREE")

local searchpath = require("compat").searchpath

describe("the module under test", function()
    if not tree then
        pending("comes from the rock tree (only under make test-rock)")
        return
    end
    it("is the one installed into the rock tree", function()
        require("mqtt")
        for _, f in ipairs({ searchpath("mqtt", package.path), searchpath("mqtt.tls", package.path),
                             searchpath("mqtt.route", package.path),
                             searchpath("mqtt.core", package.cpath) }) do
            assert.equal(tree, f:sub(1, #tree))
        end
    end)
end)
