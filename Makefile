# lockup: `make` builds build/lockup/core.so; see README.md for the rest.
LUA_VERSION ?= 5.4
LUA_CFLAGS  ?= $(shell pkg-config --cflags lua$(LUA_VERSION))
CURL_CFLAGS ?= $(shell pkg-config --cflags libcurl)
CURL_LIBS   ?= $(shell pkg-config --libs libcurl)
CC       ?= cc
WARN     := -Wall -Wextra -Wshadow -Werror=implicit-function-declaration
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=c99 -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) $(LUA_CFLAGS) $(CURL_CFLAGS)

CORE_SRC := src/buf.c src/demux.c src/sentinel.c src/http.c src/conn.c
BIND_SRC := src/l_core.c src/l_conn.c src/l_response.c src/l_stream.c
HEADERS  := $(wildcard src/*.h)
BUILD    ?= build

$(BUILD)/lockup/core.so: $(CORE_SRC) $(BIND_SRC) $(HEADERS) | $(BUILD)/lockup
	$(CC) $(ALL_CFLAGS) -shared -o $@ $(CORE_SRC) $(BIND_SRC) $(CURL_LIBS) $(LDFLAGS)

$(BUILD)/lockup:
	mkdir -p $@

clean:
	rm -rf build build-asan

.PHONY: clean
