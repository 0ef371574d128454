# make lint: static checks, each an error when it finds anything.
#   luacheck   lua/, bin/, examples/, spec/ and integration/ (.luacheckrc: Lua
#              5.1..5.4 portability, busted, OpenResty and LÖVE globals)
#   luarocks   lint of the rockspecs
#   clang-tidy src/*/*.c and their headers with the build's flags (.clang-tidy)
#   cppcheck   src/ (warning, style, performance, portability)
#   ldoc       the doc comments parse without a warning (mk/docs.mk)
#   whitespace what .editorconfig asks of C and Lua: no tabs, no trailing
#              blanks, a final newline
# `make format-check` shows how far src/ is from .clang-format; it is not part
# of lint, as the tree predates that file.
# clang-tidy parses src/ with the build's headers (Lua, mbedtls, libc);
# luarocks lints the rockspecs; LDoc comes with the docs list.
LINT_PACKAGES  = $(BUILD_PACKAGES) $(DOCS_PACKAGES) lua-check clang-tidy cppcheck clang-format \
                 luarocks
PACKAGE_LISTS += lint

LINT_LUA   := lua bin/zmqtt-pub bin/zmqtt-sub examples spec integration
LINT_C     := $(wildcard src/*/*.c)
LINT_TEXT   = $(wildcard include/*.h src/*/*.[ch] lua/mqtt/*.lua bin/zmqtt-* examples/*.lua examples/*/*.lua \
                  examples/*/*.c spec/*.lua spec/c/*.[ch] spec/fuzz/*.[ch] integration/*.lua)
LINT_JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
# What the compiler sees, so clang-tidy parses each file as the build does.
TIDY_FLAGS  = -std=c11 -D_GNU_SOURCE -pthread $(WARN) -I$(LUA_INC) $(INC_ALL) -Isrc/lua
CPPCHECK_FLAGS := --enable=warning,style,performance,portability --std=c11 --inline-suppr \
                  --error-exitcode=1 --quiet -D_GNU_SOURCE -DMBEDTLS_THREADING_C \
                  -Iinclude -Isrc/base -Isrc/codec -Isrc/session -Isrc/store -Isrc/transport -Isrc/client \
                  -Isrc/lua

.PHONY: lint lint-all lint-lua lint-rockspec lint-tidy lint-cppcheck lint-docs lint-whitespace format-check

# Every check runs (-k) so one report shows all findings; any finding fails.
lint: deps-lint
	@$(MAKE) --no-print-directory -k lint-all
	@echo "lint: clean"

lint-all: lint-lua lint-rockspec lint-cppcheck lint-tidy lint-docs lint-whitespace

lint-lua: deps-lint
	@luacheck --quiet --formatter plain $(LINT_LUA)

lint-rockspec: deps-lint
	@for r in $(SCM_ROCKSPEC) $(REL_ROCKSPEC); do luarocks lint $$r || exit 1; done

# One clang-tidy per file, LINT_JOBS at a time; clang's "N warnings generated"
# lines (counts of what the configuration filtered out) are dropped.
lint-tidy: deps-lint
	@printf '%s\n' $(LINT_C) | xargs -P $(LINT_JOBS) -I{} sh -c \
	    'out=$$(clang-tidy --quiet --warnings-as-errors="*" {} -- $(TIDY_FLAGS) 2>&1); rc=$$?; \
	     printf "%s\n" "$$out" | grep -v "^[0-9]* warnings\{0,1\} generated\.$$" | grep . ; \
	     exit $$rc'

# -D fixes the one configuration the build uses (tls_config.c refuses an
# mbedtls without threading, which cppcheck cannot see without system headers).
lint-cppcheck: deps-lint
	@cppcheck $(CPPCHECK_FLAGS) -j $(LINT_JOBS) src/

lint-docs: deps-lint
	$(call run_ldoc,$(BUILD)/lint-docs)

lint-whitespace:
	@bad=0; \
	grep -Hn "$$(printf '\t')" $(LINT_TEXT) && { echo "lint: tabs (above)"; bad=1; }; \
	grep -HnE '[[:space:]]+$$' $(LINT_TEXT) && { echo "lint: trailing blanks (above)"; bad=1; }; \
	for f in $(LINT_TEXT); do \
	    if [ -s "$$f" ] && [ -n "$$(tail -c 1 "$$f")" ]; then echo "$$f: no final newline"; bad=1; fi; \
	done; \
	exit $$bad

format-check: deps-lint
	@clang-format --dry-run --Werror include/*.h src/*/*.c src/*/*.h
