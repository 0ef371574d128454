# The API reference: LDoc turns the doc comments of lua/mqtt/ (see config.ld)
# into HTML in build/docs/. Any LDoc warning fails the build, so the reference
# never silently loses an entry. LDoc runs on Lua 5.1, where Debian's
# lua-markdown lives.
DOCS_PACKAGES  = lua-ldoc lua-markdown lua5.1
PACKAGE_LISTS += docs

DOCS_DIR ?= build/docs
LDOC     := lua5.1 /usr/bin/ldoc

# Runs LDoc into $(1); prints its warnings and fails when there are any. The
# lines LDoc prints for the files config.ld merges into mqtt are not warnings.
define run_ldoc
	@rm -rf $(1)
	@out=$$($(LDOC) -q -d $(1) . 2>&1) || { echo "$$out"; exit 1; }; \
	out=$$(echo "$$out" | grep -v -e '^reading configuration from ' -e '^found master module' \
	    -e '^\*\*\*closing section from master module\*\*\*$$') || true; \
	if [ -n "$$out" ]; then echo "$$out"; echo "ldoc: warnings (above)"; exit 1; fi
endef

docs: deps-docs
	$(call run_ldoc,$(DOCS_DIR))
	@echo "API reference: $(DOCS_DIR)/index.html"

.PHONY: docs
