/*
 * The QoS transition table, cell by cell: the rules of MQTT 3.1.1 section
 * 4.3 written out again here as a list, independently of src/session/qos.c;
 * every (state, event) pair in the list must give its row, every other pair
 * must be refused with the state unchanged. Then whole flows walked through.
 */
#include "qos.h"
#include "test.h"

typedef struct rule {
    mqtt_qos_state state;
    mqtt_qos_event event;
    mqtt_qos_state next;
    mqtt_qos_action action;
} rule;

#define Q(s) MQTT_QS_##s
#define E(e) MQTT_QE_##e
#define A(a) MQTT_QA_##a

static const rule rules[] = {
    /* outgoing, first write */
    { Q(QUEUED0), E(SEND), Q(NONE), A(SEND) },
    { Q(QUEUED1), E(SEND), Q(WAIT_PUBACK), A(SEND) },
    { Q(QUEUED2), E(SEND), Q(WAIT_PUBREC), A(SEND) },
    { Q(QUEUED_SUB), E(SEND), Q(WAIT_SUBACK), A(SEND) },
    { Q(QUEUED_UNSUB), E(SEND), Q(WAIT_UNSUBACK), A(SEND) },
    { Q(QUEUED0), E(RECONNECT), Q(QUEUED0), A(NONE) },
    { Q(QUEUED1), E(RECONNECT), Q(QUEUED1), A(NONE) },
    { Q(QUEUED2), E(RECONNECT), Q(QUEUED2), A(NONE) },
    { Q(QUEUED_SUB), E(RECONNECT), Q(QUEUED_SUB), A(NONE) },
    { Q(QUEUED_UNSUB), E(RECONNECT), Q(QUEUED_UNSUB), A(NONE) },
    /* QoS 1 */
    { Q(WAIT_PUBACK), E(PUBACK), Q(NONE), A(ACKED) },
    { Q(WAIT_PUBACK), E(RECONNECT), Q(WAIT_PUBACK), A(MARK_DUP) },
    { Q(WAIT_PUBACK), E(SEND), Q(WAIT_PUBACK), A(RESEND) },
    /* QoS 2 */
    { Q(WAIT_PUBREC), E(PUBREC), Q(WAIT_PUBCOMP), A(ACKED) },
    { Q(WAIT_PUBREC), E(PUBACK), Q(NONE), A(DOWNGRADED) },
    { Q(WAIT_PUBREC), E(RECONNECT), Q(WAIT_PUBREC), A(MARK_DUP) },
    { Q(WAIT_PUBREC), E(SEND), Q(WAIT_PUBREC), A(RESEND) },
    { Q(WAIT_PUBCOMP), E(PUBREC), Q(WAIT_PUBCOMP), A(DUPLICATE) },
    { Q(WAIT_PUBCOMP), E(PUBCOMP), Q(NONE), A(ACKED) },
    { Q(WAIT_PUBCOMP), E(RECONNECT), Q(WAIT_PUBCOMP), A(NONE) },
    { Q(WAIT_PUBCOMP), E(SEND), Q(WAIT_PUBCOMP), A(PUBREL) },
    /* MQTT 5.0: refused at PUBREC, over */
    { Q(WAIT_PUBREC), E(PUBREC_REFUSED), Q(NONE), A(ACKED) },
    /* SUBSCRIBE, UNSUBSCRIBE */
    { Q(WAIT_SUBACK), E(SUBACK), Q(NONE), A(ACKED) },
    { Q(WAIT_SUBACK), E(RECONNECT), Q(WAIT_SUBACK), A(NONE) },
    { Q(WAIT_SUBACK), E(SEND), Q(WAIT_SUBACK), A(RESEND) },
    { Q(WAIT_UNSUBACK), E(UNSUBACK), Q(NONE), A(ACKED) },
    { Q(WAIT_UNSUBACK), E(RECONNECT), Q(WAIT_UNSUBACK), A(NONE) },
    { Q(WAIT_UNSUBACK), E(SEND), Q(WAIT_UNSUBACK), A(RESEND) },
    /* incoming QoS 2 */
    { Q(NONE), E(PUBLISH), Q(IN_HELD), A(STORE) },
    { Q(NONE), E(PUBREL), Q(NONE), A(PUBCOMP) },
    { Q(IN_HELD), E(PUBLISH), Q(IN_HELD), A(PUBREC) },
    { Q(IN_HELD), E(PUBREL), Q(NONE), A(DELIVER) },
    { Q(IN_HELD), E(RECONNECT), Q(IN_HELD), A(NONE) },
    { Q(IN_HELD), E(RELEASE), Q(IN_RELEASED), A(DELIVER) },
    { Q(IN_HELD), E(DROP), Q(NONE), A(DELIVER) },
    { Q(IN_RELEASED), E(PUBLISH), Q(IN_RELEASED), A(PUBREC) },
    { Q(IN_RELEASED), E(PUBREL), Q(NONE), A(PUBCOMP) },
    { Q(IN_RELEASED), E(RECONNECT), Q(IN_RELEASED), A(NONE) },
    { Q(IN_RELEASED), E(RELEASE), Q(IN_RELEASED), A(NONE) },
    { Q(IN_RELEASED), E(DROP), Q(NONE), A(NONE) },
};

#define NRULES (sizeof rules / sizeof rules[0])

static const rule *find_rule(int s, int e)
{
    for (size_t i = 0; i < NRULES; i++)
        if ((int)rules[i].state == s && (int)rules[i].event == e)
            return &rules[i];
    return NULL;
}

/* Every cell of the table against the list. */
static void test_every_cell(void)
{
    int wrong = 0, valid = 0, invalid = 0;
    for (int s = 0; s < MQTT_QS_COUNT; s++) {
        for (int e = 0; e < MQTT_QE_COUNT; e++) {
            mqtt_qos_step st = mqtt__qos_step((mqtt_qos_state)s, (mqtt_qos_event)e);
            const rule *r = find_rule(s, e);
            bool ok = r ? st.next == r->next && st.action == r->action
                        : st.next == s && st.action == MQTT_QA_INVALID;
            if (!ok) {
                printf("#   cell state %d event %d: got next %d action %d\n", s, e, st.next,
                       st.action);
                wrong++;
            }
            valid += r != NULL;
            invalid += r == NULL;
        }
    }
    CHECK(wrong == 0, "table: every cell as the rules say, invalid ones refused");
    CHECK(valid == (int)NRULES && valid + invalid == MQTT_QS_COUNT * MQTT_QE_COUNT,
          "table: the rules are distinct and cover the valid cells");
    printf("# %d cells: %d valid, %d invalid\n", valid + invalid, valid, invalid);
}

static void test_out_of_range(void)
{
    mqtt_qos_step a = mqtt__qos_step(MQTT_QS_COUNT, MQTT_QE_SEND);
    mqtt_qos_step b = mqtt__qos_step(MQTT_QS_QUEUED1, MQTT_QE_COUNT);
    mqtt_qos_step c = mqtt__qos_step((mqtt_qos_state)-1, (mqtt_qos_event)-1);
    CHECK(a.action == MQTT_QA_INVALID && a.next == MQTT_QS_COUNT, "range: state past the end");
    CHECK(b.action == MQTT_QA_INVALID && b.next == MQTT_QS_QUEUED1, "range: event past the end");
    CHECK(c.action == MQTT_QA_INVALID, "range: negative state and event");
}

static void test_initial(void)
{
    CHECK(mqtt__qos_initial(MQTT_REC_PUBLISH, 0) == MQTT_QS_QUEUED0 &&
              mqtt__qos_initial(MQTT_REC_PUBLISH, 1) == MQTT_QS_QUEUED1 &&
              mqtt__qos_initial(MQTT_REC_PUBLISH, 2) == MQTT_QS_QUEUED2,
          "initial: a PUBLISH starts queued for its QoS");
    CHECK(mqtt__qos_initial(MQTT_REC_PUBLISH, 3) == MQTT_QS_NONE &&
              mqtt__qos_initial(MQTT_REC_PUBLISH, 255) == MQTT_QS_NONE,
          "initial: no state for QoS 3");
    CHECK(mqtt__qos_initial(MQTT_REC_SUBSCRIBE, 0) == MQTT_QS_QUEUED_SUB &&
              mqtt__qos_initial(MQTT_REC_UNSUBSCRIBE, 2) == MQTT_QS_QUEUED_UNSUB,
          "initial: SUBSCRIBE and UNSUBSCRIBE, whatever the QoS");
    CHECK(mqtt__qos_initial((mqtt_rec_kind)3, 1) == MQTT_QS_NONE &&
              mqtt__qos_initial((mqtt_rec_kind)-1, 1) == MQTT_QS_NONE,
          "initial: no state for an unknown kind");
}

/* queued: the states a first write leaves; inflight: the QoS 1/2 publish waits. */
static void test_predicates(void)
{
    int wrong = 0;
    for (int s = 0; s < MQTT_QS_COUNT; s++) {
        bool first = mqtt__qos_step((mqtt_qos_state)s, MQTT_QE_SEND).action == MQTT_QA_SEND;
        bool flight = s == MQTT_QS_WAIT_PUBACK || s == MQTT_QS_WAIT_PUBREC ||
                      s == MQTT_QS_WAIT_PUBCOMP;
        wrong += mqtt__qos_queued((uint8_t)s) != first;
        wrong += mqtt__qos_inflight((uint8_t)s) != flight;
    }
    CHECK(wrong == 0, "predicates: queued and in-flight states");
    CHECK(!mqtt__qos_queued(MQTT_QS_COUNT) && !mqtt__qos_inflight(MQTT_QS_COUNT),
          "predicates: nothing past the end");
}

/* A flow walked from a state: each event's expected action; end is the
 * final state, or -1 when the last event must be refused. */
typedef struct script {
    const char *name;
    mqtt_qos_state start;
    int end;
    size_t n;
    mqtt_qos_event ev[6];
    mqtt_qos_action want[6];
} script;

static const script scripts[] = {
    { "flow: QoS 1 lost once, resent with DUP, acked", Q(QUEUED1), Q(NONE), 4,
      { E(SEND), E(RECONNECT), E(SEND), E(PUBACK) },
      { A(SEND), A(MARK_DUP), A(RESEND), A(ACKED) } },
    { "flow: QoS 2 lost after PUBREC: PUBREL again, a late PUBREC is a duplicate", Q(QUEUED2),
      Q(NONE), 6, { E(SEND), E(PUBREC), E(RECONNECT), E(SEND), E(PUBREC), E(PUBCOMP) },
      { A(SEND), A(ACKED), A(NONE), A(PUBREL), A(DUPLICATE), A(ACKED) } },
    { "flow: QoS 2 answered by PUBACK is downgraded and complete", Q(QUEUED2), Q(NONE), 2,
      { E(SEND), E(PUBACK) }, { A(SEND), A(DOWNGRADED) } },
    { "flow: PUBACK after PUBREC is refused", Q(QUEUED2), -1, 3,
      { E(SEND), E(PUBREC), E(PUBACK) }, { A(SEND), A(ACKED), A(INVALID) } },
    { "flow: QoS 0 is gone once written", Q(QUEUED0), -1, 2, { E(SEND), E(SEND) },
      { A(SEND), A(INVALID) } },
    { "flow: no ack before the first write", Q(QUEUED1), -1, 1, { E(PUBACK) }, { A(INVALID) } },
    { "flow: SUBSCRIBE resent unchanged after a reconnect", Q(QUEUED_SUB), Q(NONE), 4,
      { E(SEND), E(RECONNECT), E(SEND), E(SUBACK) },
      { A(SEND), A(NONE), A(RESEND), A(ACKED) } },
    { "flow: incoming QoS 2 stored once, delivered once at PUBREL", Q(NONE), Q(NONE), 5,
      { E(PUBLISH), E(PUBLISH), E(RECONNECT), E(PUBREL), E(PUBREL) },
      { A(STORE), A(PUBREC), A(NONE), A(DELIVER), A(PUBCOMP) } },
    { "flow: incoming QoS 2 handed over early is not delivered again", Q(NONE), Q(NONE), 5,
      { E(PUBLISH), E(RELEASE), E(PUBLISH), E(RELEASE), E(PUBREL) },
      { A(STORE), A(DELIVER), A(PUBREC), A(NONE), A(PUBCOMP) } },
    { "flow: incoming QoS 2 whose session is lost is delivered, not lost", Q(NONE), Q(NONE), 2,
      { E(PUBLISH), E(DROP) }, { A(STORE), A(DELIVER) } },
};

/* Plays a script; true when every step and the end are as it says. */
static bool play(const script *sc)
{
    mqtt_qos_state s = sc->start;
    for (size_t i = 0; i < sc->n; i++) {
        mqtt_qos_step st = mqtt__qos_step(s, sc->ev[i]);
        if (st.action != sc->want[i])
            return false;
        if (st.action == MQTT_QA_INVALID)
            return st.next == s && sc->end == -1 && i + 1 == sc->n;
        s = (mqtt_qos_state)st.next;
    }
    return (int)s == sc->end;
}

static void test_flows(void)
{
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++)
        CHECK(play(&scripts[i]), scripts[i].name);
}

/* Whatever is written and then acked the expected way ends; nothing loops forever. */
static void test_every_flow_ends(void)
{
    static const mqtt_qos_event acks[] = { E(PUBACK), E(PUBREC), E(PUBCOMP), E(SUBACK),
                                           E(UNSUBACK) };
    int stuck = 0;
    for (int s = Q(QUEUED0); s <= Q(QUEUED_UNSUB); s++) {
        mqtt_qos_state cur = (mqtt_qos_state)s;
        for (int step = 0; step < 4 && cur != Q(NONE); step++) {
            mqtt_qos_step st = mqtt__qos_step(cur, E(SEND));
            cur = (mqtt_qos_state)st.next;
            for (size_t k = 0; k < sizeof acks / sizeof acks[0] && cur != Q(NONE); k++) {
                st = mqtt__qos_step(cur, acks[k]);
                if (st.action == A(ACKED))
                    cur = (mqtt_qos_state)st.next;
            }
        }
        stuck += cur != Q(NONE);
    }
    CHECK(stuck == 0, "flows: every queued state completes on its acks");
}

int main(void)
{
    test_every_cell();
    test_out_of_range();
    test_initial();
    test_predicates();
    test_flows();
    test_every_flow_ends();
    return test_done();
}
