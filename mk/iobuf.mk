# The I/O loop's buffers held by an idle client (spec/c/test_io_buffers.c),
# against the in-process fake broker.
$(BUILD)/test_io_buffers: spec/c/test_io_buffers.c spec/c/test.h spec/c/fake_broker.c \
                          spec/c/fake_broker.h $(BUILD)/libzmqtt.a
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -o $@ $< spec/c/fake_broker.c $(BUILD)/libzmqtt.a $(LDLIBS)
