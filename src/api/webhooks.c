/* Webhooks out (SPEC §7): endpoint management and the delivery log. */
#include "api/request.h"

void api_handle_webhooks(api_request *r, const char *rest, size_t rest_length) {
    (void)rest;
    (void)rest_length;
    if (!api_allowed(r, access_manage(r->server->access, &r->identity))) return;
    connection_respond_error(r->connection, 404, "not_found", "Webhooks are not available yet.", NULL);
}
