# make bench-store: the store's log against SQLite in WAL mode (bench/store_bench.c):
# QoS 1 flow rates per sync mode, bytes on disk per queued message, recovery
# time of 100,000 records. SQLite is the bench's alone: the library does not link it.
STORE_BENCH_PACKAGES = $(BUILD_PACKAGES) libsqlite3-dev
PACKAGE_LISTS += store-bench

.PHONY: bench-store
$(BUILD)/bench/store_bench: bench/store_bench.c $(BUILD)/libzmqtt.a | deps-store-bench
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) $(INC_store) -o $@ $< $(BUILD)/libzmqtt.a -lsqlite3 $(LDLIBS)

bench-store: $(BUILD)/bench/store_bench
	@$(BUILD)/bench/store_bench
