/* The pure parts of a delivery attempt: its Standard Webhooks headers and the verdict on its
 * answer. No I/O, no clock: both are parameters. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hooks/deliverer.h"

size_t delivery_webhook_id(char out[DELIVERY_WEBHOOK_ID_MAX], const char *epoch,
                           uint64_t event_id) {
    int n = snprintf(out, DELIVERY_WEBHOOK_ID_MAX, "evt_%s_%" PRIu64, epoch, event_id);
    return n > 0 && n < DELIVERY_WEBHOOK_ID_MAX ? (size_t)n : 0;
}

bool delivery_headers_build(delivery_headers *h, const char *epoch, uint64_t event_id,
                            int64_t unix_seconds, const webhook_key *current,
                            const webhook_key *previous, const void *body, size_t body_length) {
    char id[DELIVERY_WEBHOOK_ID_MAX], timestamp[24];
    size_t id_length = delivery_webhook_id(id, epoch, event_id);
    text_init(&h->signature_line);
    if (!id_length) return false;
    webhook_timestamp_format(unix_seconds, timestamp);
    snprintf(h->id_line, sizeof h->id_line, "webhook-id: %s", id);
    snprintf(h->timestamp_line, sizeof h->timestamp_line, "webhook-timestamp: %s", timestamp);
    text_append_cstring(&h->signature_line, "webhook-signature: ");
    /* The signed timestamp is the same text the header carries (both from unix_seconds). */
    return webhook_signature_append(&h->signature_line, current, previous, id, id_length,
                                    unix_seconds, body, body_length) &&
           text_cstring(&h->signature_line) != NULL;
}

void delivery_headers_free(delivery_headers *h) {
    text_free(&h->signature_line);
}

delivery_verdict delivery_judge(long status_code, const char *retry_after, int64_t unix_seconds,
                                uint32_t attempts, const retry_schedule *schedule,
                                retry_random random, void *random_context) {
    delivery_verdict v = {.status = STORE_DELIVERY_SUCCEEDED};
    if (status_code >= 200 && status_code <= 299) return v;
    if (status_code == 410) {
        /* Gone: the receiver asks never to be called again. */
        v.status = STORE_DELIVERY_CANCELLED;
        v.disable_endpoint = true;
        return v;
    }
    int64_t retry_after_ms = -1;
    if (status_code == 429 || status_code == 503)
        retry_after_ms = retry_after_parse_ms(retry_after, unix_seconds);
    int64_t delay = retry_next_delay_ms(schedule, attempts, retry_after_ms, random, random_context);
    if (delay < 0) {
        v.status = STORE_DELIVERY_DEAD;
        return v;
    }
    v.status = STORE_DELIVERY_FAILED;
    v.delay_ms = delay;
    return v;
}

const char *delivery_status_problem(long status_code, char *out, size_t size) {
    if (status_code >= 200 && status_code <= 299) return NULL;
    if (status_code >= 300 && status_code <= 399)
        snprintf(out, size, "The endpoint answered %ld, a redirect, which is not followed.",
                 status_code);
    else if (status_code == 410)
        snprintf(out, size, "The endpoint answered 410 Gone; it has been disabled.");
    else
        snprintf(out, size, "The endpoint answered %ld.", status_code);
    return out;
}
