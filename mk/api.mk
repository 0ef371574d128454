# The public C API's contract (spec/c/test_api.c) runs against the
# in-process fake broker, like the other C tests that need one.
$(BUILD)/test_api: spec/c/test_api.c spec/c/test.h spec/c/fake_broker.c spec/c/fake_broker.h \
                   $(BUILD)/libzmqtt.a
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -o $@ $< spec/c/fake_broker.c $(BUILD)/libzmqtt.a $(LDLIBS)
