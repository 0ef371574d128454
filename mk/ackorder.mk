# The order of a QoS 1 message and its PUBACK: send() and the two ways an
# event becomes visible are wrapped by the test (ld --wrap).
ACK_ORDER_WRAP := -Wl,--wrap=send,--wrap=mqtt__event_push,--wrap=mqtt__event_release_staged

$(BUILD)/test_ack_order: spec/c/test_ack_order.c spec/c/test.h spec/c/fake_broker.c \
                         spec/c/fake_broker.h $(BUILD)/libzmqtt.a
	$(CC) $(ALL_CFLAGS) $(INC_ALL) -o $@ $< spec/c/fake_broker.c $(BUILD)/libzmqtt.a $(LDLIBS) \
	    $(ACK_ORDER_WRAP)
