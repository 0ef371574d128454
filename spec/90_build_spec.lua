-- spec/90_build_spec.lua: what a release is made of. The two rockspecs list
-- every C source, Lua module and tool of the tree, and nothing else; the
-- versioned one is the scm one with a release version and tag (`make
-- rockspec` writes it); the version has one source, lua/mqtt/init.lua's
-- _VERSION, which the Makefile, the rockspec and CHANGELOG.md follow; and no
-- file of the tree names a path that exists on one machine only.
local helpers = require("helpers")

local REPO_URL = "git+https://github.com/zmqtt/zmqtt.git"
local SCM = "rockspec/zmqtt-scm-1.rockspec"

local function sorted(t)
    table.sort(t)
    return t
end

-- The files a shell glob names (sorted), or an empty list.
local function glob(pattern)
    local ok, _, out = helpers.run("for f in " .. pattern .. "; do [ -e \"$f\" ] && echo \"$f\"; done")
    assert(ok, out)
    local list = {}
    for path in out:gmatch("[^\n]+") do list[#list + 1] = path end
    return sorted(list)
end

-- Evaluates a rockspec (Lua assignments) into a table of its globals.
local setfenv, loadstring = rawget(_G, "setfenv"), rawget(_G, "loadstring")
local function load_rockspec(path)
    local text = assert(helpers.read_file(path), path .. " is missing: run make rockspec")
    local env = {}
    local chunk, err
    if setfenv then
        chunk, err = loadstring(text, "@" .. path)
        if chunk then setfenv(chunk, env) end
    else
        chunk, err = load(text, "@" .. path, "t", env)
    end
    assert(chunk, err)
    chunk()
    return env
end

local function run_ok(cmd)
    return (helpers.run_ok(cmd):gsub("%s+$", ""))
end

local VERSION = require("mqtt")._VERSION
local RELEASE = "rockspec/zmqtt-" .. tostring(VERSION) .. "-1.rockspec"

describe("the version", function()
    it("is semantic, in mqtt._VERSION", function()
        assert.is_string(VERSION)
        assert.truthy(VERSION:match("^%d+%.%d+%.%d+$"), "not MAJOR.MINOR.PATCH: " .. tostring(VERSION))
    end)

    it("is the one make reads from lua/mqtt/init.lua", function()
        assert.equal(VERSION, run_ok("make -s --no-print-directory version"))
    end)

    it("has a versioned rockspec naming it and its tag", function()
        local spec = load_rockspec(RELEASE)
        assert.equal(VERSION .. "-1", spec.version)
        assert.same({ url = REPO_URL, tag = "v" .. VERSION }, spec.source)
    end)

    it("has its section in CHANGELOG.md, the newest release there", function()
        local text = assert(helpers.read_file("CHANGELOG.md"), "CHANGELOG.md is missing")
        local first = text:match("\n## %[(%d+%.%d+%.%d+)%] %- %d%d%d%d%-%d%d%-%d%d\n")
        assert.equal(VERSION, first)
    end)
end)

describe("the rockspecs", function()
    local scm, release
    setup(function()
        scm, release = load_rockspec(SCM), load_rockspec(RELEASE)
    end)

    local function check_lists(spec, name)
        local modules = spec.build.modules
        local core = modules["mqtt.core"]
        assert.same(glob("src/*/*.c"), sorted(core.sources), name .. ": mqtt.core's sources")
        -- Every Lua file of lua/mqtt/ as its module: init.lua is mqtt itself.
        local want, have = {}, {}
        for _, path in ipairs(glob("lua/mqtt/*.lua")) do
            local base = path:match("([^/]+)%.lua$")
            want[base == "init" and "mqtt" or "mqtt." .. base] = path
        end
        for mod, path in pairs(modules) do
            if mod ~= "mqtt.core" then have[mod] = path end
        end
        assert.same(want, have, name .. ": the Lua modules")
        local tools = {}
        for _, path in ipairs(glob("bin/*")) do tools[path:match("[^/]+$")] = path end
        assert.same(tools, spec.build.install.bin, name .. ": the tools")
    end

    it("scm: list exactly the C sources, Lua modules and tools of the tree", function()
        check_lists(scm, SCM)
    end)

    it("versioned: list exactly the C sources, Lua modules and tools of the tree", function()
        check_lists(release, RELEASE)
    end)

    it("name the public repository: scm its main branch", function()
        assert.same({ url = REPO_URL, branch = "main" }, scm.source)
        assert.equal("scm-1", scm.version)
    end)

    it("differ only in version and source (make rockspec keeps them in step)", function()
        local a, b = {}, {}
        for k, v in pairs(scm) do a[k] = v end
        for k, v in pairs(release) do b[k] = v end
        a.version, a.source, b.version, b.source = nil, nil, nil, nil
        assert.same(a, b, RELEASE .. " is out of step with " .. SCM .. ": run make rockspec")
    end)
end)

-- A path that exists on one machine only: a file URL; a home directory
-- (home, root or Users at the top of the file system); the places where
-- machines keep their checkouts and mounts (work, mnt, media, srv at the
-- top); and the absolute directory of this checkout itself. A directory counts only where a path
-- can begin (line start, blank, quote, =, (, :, comma, [, {, <, `), so a
-- topic such as "sensors/home/1" is no path. The paths every Debian system
-- has (/usr/include, /etc/ssl/certs, /proc, /tmp, /dev) are the same
-- everywhere and stay allowed.
describe("the repository", function()
    local function tree_files()
        local ok, _, out = helpers.run("git ls-files 2>/dev/null")
        if not ok or out == "" then
            -- An unpacked release tarball: every file but the build's.
            out = run_ok("find . -type f ! -path './build/*' ! -path './.git/*' | sed 's|^\\./||'")
        end
        local list = {}
        for path in out:gmatch("[^\n]+") do list[#list + 1] = path end
        return list
    end

    it("names no path that exists on one machine only", function()
        local S = "/"   -- built up, so that this file does not name them itself
        local roots = { S .. "home" .. S, S .. "root" .. S, S .. "Users" .. S, S .. "work" .. S,
                        S .. "mnt" .. S, S .. "media" .. S, S .. "srv" .. S }
        -- The checkout's own directory, as the shell sees it and resolved;
        -- only when it is deeper than one level, so that it is no system path.
        for _, root in ipairs({ run_ok("pwd -L"), run_ok("pwd -P") }) do
            if select(2, root:gsub("/", "")) >= 2 then roots[#roots + 1] = root end
        end
        local found = {}
        local files = tree_files()
        assert.truthy(#files > 100, "too few files listed: " .. #files)
        for _, path in ipairs(files) do
            local text = helpers.read_file(path)
            if text and not text:find("\0", 1, true) then
                local n = 0
                for line in (text .. "\n"):gmatch("([^\n]*)\n") do
                    n = n + 1
                    local hit = line:find("fi" .. "le://", 1, true)
                    for _, r in ipairs(roots) do
                        local from = 1
                        while not hit do
                            local at = line:find(r, from, true)
                            if not at then break end
                            if at == 1 or line:sub(at - 1, at - 1):match("[%s\"'=(:,%[{<`]") then hit = at end
                            from = at + 1
                        end
                    end
                    if hit then found[#found + 1] = path .. ":" .. n .. ": " .. line end
                end
            end
        end
        assert.same({}, found)
    end)
end)
