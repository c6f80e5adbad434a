# lockup: `make` builds build/lockup/core.so; see README.md for the rest.
LUA_VERSION ?= 5.4
LUA_CFLAGS  ?= $(shell pkg-config --cflags lua$(LUA_VERSION))
CURL_CFLAGS ?= $(shell pkg-config --cflags libcurl)
CURL_LIBS   ?= $(shell pkg-config --libs libcurl)
# libarchive writes tar streams; libcrypto (OpenSSL, which libcurl loads anyway) hashes.
DEP_CFLAGS  ?= $(shell pkg-config --cflags libarchive libcrypto)
DEP_LIBS    ?= $(shell pkg-config --libs libarchive libcrypto)
CC       ?= cc
WARN     := -Wall -Wextra -Wshadow -Werror=implicit-function-declaration
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=c99 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) $(LUA_CFLAGS) $(CURL_CFLAGS) $(DEP_CFLAGS)

CORE_SRC := src/buf.c src/demux.c src/sentinel.c src/output.c src/http.c src/conn.c src/fifo.c src/hostfile.c src/tar.c src/frame.c src/cgroup.c
BIND_SRC := src/l_core.c src/l_conn.c src/l_response.c src/l_stream.c src/l_fifo.c src/l_tar.c src/l_hash.c src/l_fs.c src/l_frame.c src/l_poller.c src/l_cgroup.c
HEADERS  := $(wildcard src/*.h)
BUILD    ?= build

$(BUILD)/lockup/core.so: $(CORE_SRC) $(BIND_SRC) $(HEADERS) | $(BUILD)/lockup
	$(CC) $(ALL_CFLAGS) -shared -o $@ $(CORE_SRC) $(BIND_SRC) $(CURL_LIBS) $(DEP_LIBS) $(LDFLAGS)

$(BUILD)/lockup:
	mkdir -p $@

LUA      ?= lua$(LUA_VERSION)
RUN_ENV  := LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(BUILD)/?.so;;'
BUSTED   := $(LUA) /usr/bin/busted

# The README's two commands: each sets up what is missing, then does its job.
example:
	./scripts/setup.sh
	$(MAKE) --no-print-directory
	$(RUN_ENV) $(LUA) examples/quickstart.lua
	$(RUN_ENV) $(LUA) examples/thumbnail.lua
	$(RUN_ENV) $(LUA) examples/inmate.lua
	$(RUN_ENV) $(LUA) examples/fork.lua
	$(RUN_ENV) $(LUA) examples/repl.lua

check:
	./scripts/check.sh

# The specs against the plain build (Docker Engine and test image must be up:
# scripts/setup.sh), with boxes on the default lane (fifo here); test-attach
# runs again those whose behaviour depends on the lane (LANE_SPECS: what runs
# in a box's session, its lifeline, its files on the fifo lane), with boxes
# on the attach lane (spec/commit_spec.lua starts boxes on both lanes itself). The 1 GiB file test (#slow, about a minute) runs once,
# here: the other runs leave it out (ONCE).
ONCE := --exclude-tags=nginx,tls,slow
ALL_SPECS := $(sort $(wildcard spec/*_spec.lua))
LANE_SPECS := spec/engine_spec.lua spec/faults_spec.lua spec/hostile_spec.lua \
	spec/inmate_limits_spec.lua spec/inmate_pool_spec.lua spec/inmate_spec.lua spec/lane_spec.lua \
	spec/lifecycle_spec.lua spec/meter_spec.lua spec/pause_spec.lua spec/planted_spec.lua spec/pool_spec.lua \
	spec/process_spec.lua spec/reset_spec.lua spec/run_spec.lua spec/shells_spec.lua
# Specs of Lua code that never reaches the C core: AddressSanitizer has
# nothing to watch there.
PURE_LUA_SPECS := spec/codec_spec.lua spec/compat_spec.lua spec/portable_spec.lua spec/progress_spec.lua spec/shell_spec.lua \
	spec/runner_spec.lua
test: $(BUILD)/lockup/core.so
	$(BUSTED)

test-attach: $(BUILD)/lockup/core.so
	LOCKUP_LANE=attach $(BUSTED) $(ONCE) $(LANE_SPECS)

# The hostile suite again with other shells and under gVisor, on the lane
# LOCKUP_LANE names (default: lockup's choice). scripts/setup.sh makes the
# images and registers runsc when it is installed; scripts/check.sh runs each
# shell on both lanes. dash: debian-lua:local; bash: bash:local; runsc:
# busybox:local under gVisor, on the attach lane (lockup's choice for runsc).
HOSTILE := spec/hostile_spec.lua
test-dash: $(BUILD)/lockup/core.so
	LOCKUP_TEST_IMAGE=debian-lua:local $(BUSTED) $(HOSTILE)

test-bash: $(BUILD)/lockup/core.so
	LOCKUP_TEST_IMAGE=bash:local $(BUSTED) $(HOSTILE)

test-runsc: $(BUILD)/lockup/core.so
	LOCKUP_TEST_RUNTIME=runsc $(BUSTED) $(HOSTILE)

# lockup inside a real nginx (Debian's, with its lua module; scripts/setup.sh
# installs it): spec/openresty_spec.lua starts one on 127.0.0.1 with the
# LuaJIT build of the core. Lanes do not apply there (cosockets), so it runs once.
test-openresty: $(BUILD)/lockup/core.so luajit
	$(BUSTED) --run=openresty

# TLS to a Docker daemon: scripts/tls-daemon.sh starts (when it does not answer)
# a second dockerd with --tlsverify on 127.0.0.1:$(TLS_PORT), certificates made
# with openssl in $(TLS_DIR)/certs; then spec/tls_spec.lua, and the core specs
# (run, files: attach, exec, stdin) over TLS through the docker CLI's variables.
TLS_DIR  ?= /var/lib/lockup-tls
TLS_PORT ?= 2376
TLS_ENV  := LOCKUP_TLS_DIR=$(TLS_DIR) LOCKUP_TLS_PORT=$(TLS_PORT) DOCKER_HOST=tcp://127.0.0.1:$(TLS_PORT) \
	DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$(TLS_DIR)/certs/client
test-tls: $(BUILD)/lockup/core.so
	LOCKUP_TLS_DIR=$(TLS_DIR) LOCKUP_TLS_PORT=$(TLS_PORT) ./scripts/tls-daemon.sh start
	$(TLS_ENV) $(BUSTED) --run=tls

# The specs against Podman's Docker-compatible service: scripts/podman.sh
# installs podman, starts `podman system service` on $(PODMAN_SOCK) when it
# does not answer (with a containers.conf of its own) and loads the test
# images from the Docker Engine. A subset that covers every feature (a box's
# defaults, steps, exec with stdin, files, image builds, inmates, lifecycle and
# prune, warm pools, processes, both lanes' own specs), once, on the lane lockup picks there (fifo);
# the daemon-killing spec/faults_spec.lua stays Docker's.
PODMAN_SOCK  ?= /run/podman/podman.sock
PODMAN_SPECS := spec/engine_spec.lua spec/run_spec.lua spec/lifecycle_spec.lua spec/lane_spec.lua \
	spec/files_spec.lua spec/image_spec.lua spec/inmate_spec.lua spec/pool_spec.lua spec/meter_spec.lua \
	spec/pause_spec.lua spec/reset_spec.lua spec/commit_spec.lua spec/process_spec.lua
test-podman: $(BUILD)/lockup/core.so
	PODMAN_SOCK=$(PODMAN_SOCK) ./scripts/podman.sh
	DOCKER_HOST=unix://$(PODMAN_SOCK) $(BUSTED) --exclude-tags=nginx,slow $(PODMAN_SPECS)

# The same specs with the core built with AddressSanitizer and UBSan; lua5.4
# itself is not instrumented, so the ASan runtime is preloaded.
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
test-asan:
	$(MAKE) --no-print-directory BUILD=build-asan CFLAGS="$(ASAN_FLAGS)" LDFLAGS="$(ASAN_FLAGS)"
	LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(BUSTED) --cpath='build-asan/?.so' $(ONCE) \
	$(filter-out $(PURE_LUA_SPECS),$(ALL_SPECS))

# Compiles the core against OpenResty's LuaJIT 2.1 headers (libluajit2-5.1-dev), warnings as errors.
LUAJIT_CFLAGS ?= $(shell pkg-config --cflags luajit)
luajit:
	$(MAKE) --no-print-directory BUILD=build-luajit LUA_CFLAGS="$(LUAJIT_CFLAGS)" CFLAGS="-O2 -Werror"

# The whole spec suite again under LuaJIT 2.1 (OpenResty's branch: Debian's
# luajit2), against the core built for it above; Debian's busted and lua-cjson
# have 5.1 builds it loads. Subprocesses of the specs run luajit too.
LUAJIT ?= luajit
test-luajit: luajit
	LOCKUP_TEST_LUA=$(LUAJIT) $(LUAJIT) /usr/bin/busted --cpath='build-luajit/?.so' $(ONCE)

lint:
	luacheck lua examples bench spec

# build/probe: the no-Lua round-trip baseline of bench/lanes.lua.
$(BUILD)/probe: bench/probe.c | $(BUILD)/lockup
	$(CC) -std=c99 -D_GNU_SOURCE $(WARN) -O2 -o $@ bench/probe.c

bench-lanes: $(BUILD)/lockup/core.so $(BUILD)/probe
	$(RUN_ENV) $(LUA) bench/lanes.lua

# bench/scheduler.lua: a wakeup's cost with 0 to 5000 idle waiters, a pipe
# each (10000 descriptors: the soft limit goes up to 20000, or the hard one).
bench-scheduler: $(BUILD)/lockup/core.so
	ulimit -n 20000 2>/dev/null || ulimit -n $$(ulimit -Hn); $(RUN_ENV) $(LUA) bench/scheduler.lua
.PHONY: bench-scheduler

# bench/deadlines.lua: a call with a timeout under an output flood, per lane,
# run and exec, with and without callbacks: when it returns, against its timeout.
bench-deadlines: $(BUILD)/lockup/core.so
	$(RUN_ENV) $(LUA) bench/deadlines.lua
.PHONY: bench-deadlines

# bench/meter.lua: what accounting costs a trivial step, against the same
# step on a box without it in the same run (issue 22: at most 10%).
bench-meter: $(BUILD)/lockup/core.so
	$(RUN_ENV) $(LUA) bench/meter.lua
.PHONY: bench-meter

# bench/pool.lua: warm pool:acquire() under a steady load, a pooled inmate
# call, and a cold box against the Engine's create+start+remove floor.
bench-pool: $(BUILD)/lockup/core.so
	$(RUN_ENV) $(LUA) bench/pool.lua
.PHONY: bench-pool

# bench/fork.lua: a conversion in a clean box by rebuilding it, from a
# committed image, and from a reset pool; a reset box handed out against a
# cold start; pooled inmate calls back to back from a plain script (issue 23).
bench-fork: $(BUILD)/lockup/core.so
	$(RUN_ENV) $(LUA) bench/fork.lua
.PHONY: bench-fork

# bench/process.lua: a line to a spawned process and its answer, against
# the same program over host pipes and a step's round trip (issue 21).
bench-process: $(BUILD)/lockup/core.so $(BUILD)/probe
	$(RUN_ENV) $(LUA) bench/process.lua
.PHONY: bench-process

bench: $(BUILD)/lockup/core.so $(BUILD)/probe
	$(MAKE) --no-print-directory bench-scheduler
	$(RUN_ENV) $(LUA) bench/lanes.lua
	$(RUN_ENV) $(LUA) bench/latency.lua
	$(RUN_ENV) $(LUA) bench/concurrency.lua
	$(RUN_ENV) $(LUA) bench/files.lua
	$(RUN_ENV) $(LUA) bench/inmate.lua
	$(RUN_ENV) $(LUA) bench/pool.lua
	$(RUN_ENV) $(LUA) bench/fork.lua
	$(RUN_ENV) $(LUA) bench/process.lua
	$(RUN_ENV) $(LUA) bench/deadlines.lua
	$(RUN_ENV) $(LUA) bench/meter.lua
	$(RUN_ENV) $(LUA) bench/runtimes.lua
	$(MAKE) --no-print-directory luajit
	$(RUN_ENV) $(LUA) bench/openresty.lua
	$(MAKE) --no-print-directory bench-peers

# bench/peers.lua: lockup against dockerode, docker-exec, the Docker SDK for
# Python, the docker CLI and the Engine's own floor, in one run; writes
# bench/results/peers.{csv,md}, latency.png, scaling.png. Installs what is
# missing first: Debian's python3-docker and gnuplot-nox (and nodejs/npm), the
# npm packages of bench/peers/node (once), the image bash:local (setup.sh).
PEERS_APT := python3-docker gnuplot-nox
bench-peers: $(BUILD)/lockup/core.so
	@missing=""; for p in $(PEERS_APT); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	    echo "bench-peers: installing$$missing"; \
	    sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	    $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ -d bench/peers/node/node_modules ] || (cd bench/peers/node && npm ci --no-audit --no-fund)
	@docker image inspect bash:local >/dev/null 2>&1 || ./scripts/setup.sh
	$(RUN_ENV) $(LUA) bench/peers.lua
.PHONY: bench-peers

include fuzz/fuzz.mk

clean:
	rm -rf build build-asan build-luajit

.PHONY: clean example check test test-attach test-dash test-bash test-runsc test-asan luajit test-luajit test-openresty test-tls test-podman lint bench bench-lanes
