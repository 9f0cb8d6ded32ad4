# Debian packages (debian/, docs/packaging.md):
#
#   make deb     builds postgresql-15-pg-duet_<version>_<arch>.deb and
#                pg-duet-clickhouse-udf_<version>_<arch>.deb into build/deb/ with
#                dpkg-buildpackage, from a copy of the tree in build/deb/pg-duet-<version>/, so the
#                source tree is left as it was. Works as root and as any user.
#
# DEB_BUILD_OPTIONS is passed on; its default, nocheck, skips the build-time regression run
# (dh_pgxs_test) because test/suites/60-deb.sh runs the suite against the installed package.
# `make deb DEB_BUILD_OPTIONS=` runs it too, as a Debian build daemon would.
DEB_DIR           := $(BUILD)/deb
DEB_BUILD_OPTIONS ?= nocheck

.PHONY: deb
deb:
	@upstream=$$(dpkg-parsechangelog -l debian/changelog -S Version | sed 's/-[^-]*$$//'); \
	  test "$$upstream" = "$(EXTVERSION)" || \
	  { echo "deb: debian/changelog is at $$upstream but pg_duet.control at $(EXTVERSION): add a changelog entry (dch -v $(EXTVERSION)-1)"; exit 1; }
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/pg-duet-$(EXTVERSION)
	tar -C $(CURDIR) --exclude=./build --exclude-vcs --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
	  --exclude=./results --exclude=./tmp_check --exclude='./pg_duet--$(EXTVERSION).sql' --exclude=./demo/data \
	  -cf - . | tar -C $(DEB_DIR)/pg-duet-$(EXTVERSION) -xf -
	cd $(DEB_DIR)/pg-duet-$(EXTVERSION) && \
	  DEB_BUILD_OPTIONS="$(DEB_BUILD_OPTIONS)" dpkg-buildpackage -b -us -uc \
	    $(if $(findstring nocheck,$(DEB_BUILD_OPTIONS)),-Pnocheck) >../build.log 2>&1 || \
	  { tail -n 60 ../build.log; echo "deb: dpkg-buildpackage failed, the whole log is $(DEB_DIR)/build.log"; exit 1; }
	@ls -1 $(DEB_DIR)/*.deb
