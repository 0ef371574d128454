-- Under `make test-rock` the suite runs against the module luarocks
-- installed (ZMQTT_ROCK_TREE): check that this is what require loaded.
local tree = os.getenv("ZMQTT_ROCK_TREE")

-- The file a module comes from along a search path (package.searchpath is 5.2+).
local function found(path, name)
    for template in path:gmatch("[^;]+") do
        local file = template:gsub("%?", (name:gsub("%.", "/")))
        local f = io.open(file, "rb")
        if f then
            f:close()
            return file
        end
    end
end

describe("the module under test", function()
    if not tree then
        pending("comes from the rock tree (only under make test-rock)")
        return
    end
    it("is the one installed into the rock tree", function()
        require("mqtt")
        for _, f in ipairs({ found(package.path, "mqtt"), found(package.path, "mqtt.tls"),
                             found(package.cpath, "mqtt.core") }) do
            assert.equal(tree, f:sub(1, #tree))
        end
    end)
end)
