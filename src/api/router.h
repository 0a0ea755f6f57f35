#ifndef HERALD_API_ROUTER_H
#define HERALD_API_ROUTER_H
/* Owns: mapping a parsed request to its handler (SPEC §3–5, §10), 404 and 405 with Allow. */
#include "http/http_parser.h"
#include "net/server.h"

void api_handle_request(connection *c, const http_request *r);

#endif
