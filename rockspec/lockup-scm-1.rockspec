rockspec_format = "3.0"
package = "lockup"
version = "scm-1"
source = { url = "git+file://." }
description = {
  summary = "Ephemeral Docker sandboxes for Lua, with a C core",
  detailed = [[
    Start a throwaway container, run untrusted commands in a long-lived shell
    step by step (stdout, stderr and exit code of each), many boxes at once
    from coroutines, and throw the container away.
  ]],
  license = "MIT",
}
-- One tree for Lua 5.4 and LuaJIT 2.1 (OpenResty's, Debian's luajit2), which
-- luarocks sees as Lua 5.1; those two are what is built and tested. Plain Lua
-- 5.1 to 5.3 are not. The jail's runtime needs lua5.4 in the inmate's image
-- whatever runs on the host.
dependencies = { "lua >= 5.1, < 5.5", "lua-cjson" }
external_dependencies = {
  -- the library only: Debian keeps curl.h in a multiarch directory luarocks does not search
  CURL = { library = "curl" },
  ARCHIVE = { header = "archive.h" },
  CRYPTO = { header = "openssl/evp.h" },
}
build = {
  type = "builtin",
  modules = {
    ["lockup"] = "lua/lockup/init.lua",
    ["lockup.box"] = "lua/lockup/box.lua",
    ["lockup.lifecycle"] = "lua/lockup/lifecycle.lua",
    ["lockup.session"] = "lua/lockup/session.lua",
    ["lockup.shell"] = "lua/lockup/shell.lua",
    ["lockup.reset"] = "lua/lockup/reset.lua",
    ["lockup.commit"] = "lua/lockup/commit.lua",
    ["lockup.tarsum"] = "lua/lockup/tarsum.lua",
    ["lockup.step"] = "lua/lockup/step.lua",
    ["lockup.meter"] = "lua/lockup/meter.lua",
    ["lockup.mutex"] = "lua/lockup/mutex.lua",
    ["lockup.exec"] = "lua/lockup/exec.lua",
    ["lockup.process"] = "lua/lockup/process.lua",
    ["lockup.lane.attach"] = "lua/lockup/lane/attach.lua",
    ["lockup.lane.fifo"] = "lua/lockup/lane/fifo.lua",
    ["lockup.lane.cosocket"] = "lua/lockup/lane/cosocket.lua",
    ["lockup.cosocket"] = "lua/lockup/cosocket.lua",
    ["lockup.ngx"] = "lua/lockup/ngx.lua",
    ["lockup.docker"] = "lua/lockup/docker.lua",
    ["lockup.endpoint"] = "lua/lockup/endpoint.lua",
    ["lockup.client"] = "lua/lockup/client.lua",
    ["lockup.explain"] = "lua/lockup/explain.lua",
    ["lockup.hardening"] = "lua/lockup/hardening.lua",
    ["lockup.unsafe"] = "lua/lockup/unsafe.lua",
    ["lockup.options"] = "lua/lockup/options.lua",
    ["lockup.result"] = "lua/lockup/result.lua",
    ["lockup.scheduler"] = "lua/lockup/scheduler.lua",
    ["lockup.loop"] = "lua/lockup/loop.lua",
    ["lockup.pool"] = "lua/lockup/pool.lua",
    ["lockup.compat"] = "lua/lockup/compat.lua",
    ["lockup.context"] = "lua/lockup/context.lua",
    ["lockup.files"] = "lua/lockup/files.lua",
    ["lockup.image"] = "lua/lockup/image.lua",
    ["lockup.progress"] = "lua/lockup/progress.lua",
    ["lockup.inmate"] = "lua/lockup/inmate.lua",
    ["lockup.inmate.codec"] = "lua/lockup/inmate/codec.lua",
    ["lockup.inmate.reader"] = "lua/lockup/inmate/reader.lua",
    -- the runtime: a script in the jail (copied into its image with the codec), a module for local mode
    ["lockup.inmate.runner"] = "lua/lockup/inmate/runner.lua",
    ["lockup.core"] = {
      sources = {
        "src/buf.c", "src/demux.c", "src/sentinel.c", "src/output.c", "src/http.c", "src/conn.c", "src/fifo.c",
        "src/hostfile.c", "src/tar.c", "src/frame.c", "src/cgroup.c",
        "src/l_core.c", "src/l_conn.c", "src/l_response.c", "src/l_stream.c", "src/l_fifo.c",
        "src/l_tar.c", "src/l_hash.c", "src/l_fs.c", "src/l_frame.c", "src/l_poller.c", "src/l_cgroup.c",
      },
      defines = { "_GNU_SOURCE" },
      libraries = { "curl", "archive", "crypto" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
    },
  },
}
