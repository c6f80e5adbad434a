# libFuzzer harnesses for the sans-IO parsers (included by the top Makefile).
#   make fuzz-build            builds build/fuzz/fuzz_{demux,sentinel,http,frame,output,cgroup}
#                              (each includes fuzz/fuzz_split.h: CHECK and the cut plan)
#   make fuzz [FUZZ_SECONDS=60] runs each for FUZZ_SECONDS (make -j3 fuzz: side by side);
#                              fails if one crashes (the input lands in build/fuzz/artifacts/NAME/)
# fuzz/corpus/NAME is read-only seed: new inputs go to build/fuzz/corpus/NAME. To keep
# a few of them (new edges only, not new hit counts):
#   build/fuzz/fuzz_NAME -merge=1 -use_counters=0 -use_cmp=0 fuzz/corpus/NAME build/fuzz/corpus/NAME
# This file defines no default goal of its own, wherever it is included.
_fuzz_default_goal := $(.DEFAULT_GOAL)

BUILD        ?= build
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  ?= -g -O1
FUZZ_FLAGS   ?=
FUZZ_NAMES   := demux sentinel http frame output cgroup
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_CORE    := src/buf.c src/demux.c src/sentinel.c src/http.c src/frame.c src/output.c src/cgroup.c
FUZZ_SAN     := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)
# The HTTP harness needs inputs past the head limit (LK_HTTP_HEAD_MAX, 16 KiB).
FUZZ_MAX_LEN_demux    := 4096
FUZZ_MAX_LEN_sentinel := 4096
FUZZ_MAX_LEN_http     := 20000
FUZZ_MAX_LEN_frame    := 4096
FUZZ_MAX_LEN_output   := 4096
FUZZ_MAX_LEN_cgroup   := 4096

$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_split.h $(FUZZ_CORE) $(wildcard src/*.h) fuzz/fuzz.mk
	@mkdir -p $(@D)
	$(FUZZ_CC) -std=c99 -D_GNU_SOURCE -Wall -Wextra -Wshadow $(FUZZ_SAN) $(FUZZ_CFLAGS) \
		-o $@ $< $(FUZZ_CORE)

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_NAMES:%=fuzz-%)

$(FUZZ_NAMES:%=fuzz-%): fuzz-%: $(FUZZ_DIR)/fuzz_%
	@mkdir -p $(FUZZ_DIR)/corpus/$* $(FUZZ_DIR)/artifacts/$*
	$(FUZZ_DIR)/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$*) -timeout=10 \
		-print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/artifacts/$*/ $(FUZZ_FLAGS) \
		$(FUZZ_DIR)/corpus/$* fuzz/corpus/$*

.PHONY: fuzz fuzz-build $(FUZZ_NAMES:%=fuzz-%)

.DEFAULT_GOAL := $(_fuzz_default_goal)
