-- LÖVE configuration for the zmqtt example: no window and none of the
-- modules that need a display or a sound card, so it runs headless (CI, a
-- server). A real game keeps its window: zmqtt needs none of these.
function love.conf(t)
    t.identity = "zmqtt-love-example"
    t.version = "11.4"
    t.console = false
    t.window = false
    for _, m in ipairs { "audio", "sound", "graphics", "window", "image", "font", "video",
                         "joystick", "keyboard", "mouse", "touch", "physics" } do
        t.modules[m] = false
    end
    -- Kept: event (love.event.quit), timer (dt), thread (the worker), data.
end
