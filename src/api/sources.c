/* Webhooks in (SPEC §8): source management and POST /v1/hooks/{name}. */
#include "api/request.h"

void api_handle_sources(api_request *r, const char *rest, size_t rest_length) {
    (void)rest;
    (void)rest_length;
    if (!api_allowed(r, access_manage(r->server->access, &r->identity))) return;
    connection_respond_error(r->connection, 404, "not_found", "Sources are not available yet.", NULL);
}

void api_handle_hook(api_request *r, const char *name, size_t name_length) {
    (void)name;
    (void)name_length;
    connection_respond_error(r->connection, 404, "not_found", "No such webhook source.", NULL);
}
