-- spec/summary_output.lua: busted output handler used by spec/run-all.sh.
-- Prints one line per test as it ends ("ok", "FAIL", "ERROR", "skip"), the
-- message and a trimmed traceback under each failure or error (including those
-- outside `it`: load errors, setup/teardown, describe bodies), and finally one
-- machine-readable line: "#summary passed=N failed=N errors=N pending=N".

return function()
    local busted = require("busted")
    local handler = require("busted.outputHandlers.base")()
    local pretty = require("pl.pretty")

    local function out(line)
        io.stdout:write(line, "\n")
        io.stdout:flush()
    end

    local function message_text(message)
        if type(message) == "string" then
            return message
        elseif message == nil then
            return "nil error"
        end
        return pretty.write(message)
    end

    -- Keeps the frames that belong to the specs and the code under test.
    local function trimmed_traceback(trace)
        local tb = trace and trace.traceback
        if type(tb) ~= "string" then
            return {}
        end
        local lines = {}
        for line in tb:gmatch("[^\n]+") do
            if not line:find("stack traceback:", 1, true) and
               not line:find("/busted/", 1, true) and
               not line:find("/luassert/", 1, true) and
               not line:find("/pl/", 1, true) and
               not line:find("[C]: in function 'xpcall'", 1, true) and
               not line:find("(...tail calls...)", 1, true) then
                lines[#lines + 1] = "        " .. line:gsub("^%s+", "")
            end
        end
        return lines
    end

    local function report(label, element, message, trace)
        local name = element.descriptor == "file" and ("loading " .. tostring(element.name))
                     or handler.getFullName(element)
        local where = ""
        if trace and trace.short_src then
            where = " (" .. trace.short_src .. ":" .. tostring(trace.currentline) .. ")"
        end
        out(("  %-5s %s%s"):format(label, name, where))
        for line in message_text(message):gmatch("[^\n]+") do
            out("        " .. line)
        end
        for _, line in ipairs(trimmed_traceback(trace)) do
            out(line)
        end
    end

    handler.fileStart = function(file)
        out(file.name)
        return nil, true
    end

    handler.testEnd = function(element, _, status)
        if status == "success" then
            -- Slow tests show their duration, to keep an eye on needless waits.
            local d = element.duration or 0
            out("  ok    " .. handler.getFullName(element) ..
                (d >= 0.1 and (" (%.2f s)"):format(d) or ""))
        elseif status == "pending" then
            out("  skip  " .. handler.getFullName(element))
        end
        return nil, true
    end

    handler.failure = function(element, _, message, trace)
        report(element.descriptor == "it" and "FAIL" or "ERROR", element, message, trace)
        return nil, true
    end

    handler.error = function(element, _, message, trace)
        report("ERROR", element, message, trace)
        return nil, true
    end

    handler.suiteEnd = function()
        local passed = handler.successesCount
        local failed = handler.failuresCount
        local errors = handler.errorsCount
        local pending = handler.pendingsCount
        out(("busted: %d passed, %d failed, %d errors, %d pending in %.2f s"):format(
            passed, failed, errors, pending, handler.getDuration()))
        out(("#summary passed=%d failed=%d errors=%d pending=%d"):format(
            passed, failed, errors, pending))
        return nil, true
    end

    busted.subscribe({ "file", "start" }, handler.fileStart)
    busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
    busted.subscribe({ "failure" }, handler.failure)
    busted.subscribe({ "error" }, handler.error)
    busted.subscribe({ "suite", "end" }, handler.suiteEnd)

    return handler
end
