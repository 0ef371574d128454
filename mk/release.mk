# Releases. The version is lua/mqtt/init.lua's _VERSION (see VERSION).
#   make rockspec   writes rockspec/zmqtt-$(VERSION)-1.rockspec from the scm
#                   one: same build, a release version and the tag v$(VERSION)
#   make dist       the release tarball and the source rock, in $(DIST_DIR)
#   make test-dist  spec/93_dist_spec.lua, installing that rock offline for
#                   each of DIST_LUAS
# The tarball holds the files git tracks, as they are in the work tree, under
# zmqtt-$(VERSION)/; the source rock is what `luarocks pack` makes of the
# versioned rockspec (the rockspec and the sources in zmqtt/, the directory a
# git source unpacks to), assembled here because packing would clone the
# public repository. Both carry the last commit's time, so a commit always
# gives the same bytes.
SCM_ROCKSPEC  := rockspec/zmqtt-scm-1.rockspec
REL_ROCKSPEC  := rockspec/zmqtt-$(VERSION)-1.rockspec
DIST_DIR      ?= build/dist
DIST_NAME     := zmqtt-$(VERSION)
DIST_LUAS     ?= lua5.1 lua5.2 lua5.3 lua5.4 luajit

DIST_PACKAGES       = git zip
# luarocks builds LuaJIT's rock against lua5.1's headers (the 5.1 ABI).
DIST_TEST_PACKAGES  = $(TEST_PACKAGES) lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 \
                      liblua5.3-dev lua5.4 liblua5.4-dev luajit2
PACKAGE_LISTS      += dist dist-test

# gen_rockspec OUT: the versioned rockspec from the scm one; only the version
# line and the branch (main) become the release's version and tag.
define gen_rockspec
	@[ -n "$(VERSION)" ] || { echo "no _VERSION in lua/mqtt/init.lua"; exit 1; }
	@sed -e 's/^version = "scm-1"$$/version = "$(VERSION)-1"/' \
	     -e 's/^\( *\)branch = "main",$$/\1tag = "v$(VERSION)",/' $(SCM_ROCKSPEC) >$(1).tmp
	@[ "$$(diff $(SCM_ROCKSPEC) $(1).tmp | grep -c '^>')" = 2 ] || \
	    { echo "$(SCM_ROCKSPEC): expected one version line and one branch = \"main\" line"; \
	      rm -f $(1).tmp; exit 1; }
	@mv $(1).tmp $(1)
endef

rockspec:
	$(call gen_rockspec,$(REL_ROCKSPEC))
	@echo "wrote $(REL_ROCKSPEC)"

dist: deps-dist
	@rm -rf $(DIST_DIR)/stage && mkdir -p $(DIST_DIR)/stage/rock
	$(call gen_rockspec,$(DIST_DIR)/stage/$(notdir $(REL_ROCKSPEC)))
	@cmp -s $(DIST_DIR)/stage/$(notdir $(REL_ROCKSPEC)) $(REL_ROCKSPEC) || \
	    { echo "$(REL_ROCKSPEC) is missing or out of step with $(SCM_ROCKSPEC): run make rockspec"; \
	      exit 1; }
	@git rev-parse --is-inside-work-tree >/dev/null 2>&1 || \
	    { echo "make dist packs the files git tracks: run it in a git checkout"; exit 1; }
	@t=$$(git log -1 --format=%ct) && \
	git ls-files -z | tar --null -T - --sort=name --mtime=@$$t --owner=0 --group=0 \
	    --numeric-owner --mode=go-w --transform='s,^,$(DIST_NAME)/,' -cf - | \
	    gzip -n -9 >$(DIST_DIR)/$(DIST_NAME).tar.gz && \
	tar -C $(DIST_DIR)/stage/rock -xzf $(DIST_DIR)/$(DIST_NAME).tar.gz && \
	mv $(DIST_DIR)/stage/rock/$(DIST_NAME) $(DIST_DIR)/stage/rock/zmqtt && \
	cp $(REL_ROCKSPEC) $(DIST_DIR)/stage/rock/ && \
	touch -d @$$t $(DIST_DIR)/stage/rock/$(notdir $(REL_ROCKSPEC)) && \
	rm -f $(DIST_DIR)/$(DIST_NAME)-1.src.rock && \
	cd $(DIST_DIR)/stage/rock && \
	{ echo $(notdir $(REL_ROCKSPEC)); find zmqtt -type f | LC_ALL=C sort; } | \
	    TZ=UTC zip -q -X -D -9 -@ ../../$(DIST_NAME)-1.src.rock
	@cd $(DIST_DIR) && rm -rf stage && \
	    sha256sum $(DIST_NAME).tar.gz $(DIST_NAME)-1.src.rock >SHA256SUMS && \
	    echo "$(DIST_DIR):" && cat SHA256SUMS

test-dist: deps-dist-test deps-dist
	@ZMQTT_DIST_LUAS="$(DIST_LUAS)" BUSTED="$(BUSTED)" SPECS=spec/93_dist_spec.lua \
	    sh spec/run-all.sh

.PHONY: rockspec dist test-dist
