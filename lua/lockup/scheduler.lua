-- The waits every lockup call makes (wait, sleep, park and wake, yield),
-- and the tasks they run in (run, spawn, background), from one backend
-- chosen once, when this module loads: nginx's own inside nginx
-- (lockup.ngx: cosockets, ngx.sleep, light threads), lockup's epoll loop
-- everywhere else (lockup.loop). Both have the same functions; the loop
-- has _stats too, for its specs.
local ngx_backend = require "lockup.ngx"

if ngx_backend.active then return ngx_backend.scheduler end
return require "lockup.loop"
