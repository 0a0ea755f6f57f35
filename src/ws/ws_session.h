#ifndef HERALD_WS_SESSION_H
#define HERALD_WS_SESSION_H
/* Owns: WebSocket connections after the upgrade — herald's JSON protocol on /v1/ws (subscribe
 * with replay, unsubscribe, publish with durable ack, ping) and raw mode on
 * /v1/topics/{topic}/ws — plus server pings, the close handshake and the shared, encode-once
 * event frames (plain and permessage-deflate). */
#include "api/request.h"

/* Answers the upgrade request (101, or a JSON error) and takes the connection over.
 * raw: /v1/topics/{topic}/ws with r->topic set. */
void ws_session_upgrade(api_request *r, bool raw);
/* Frees the shared deflater at exit. */
void ws_session_cleanup(void);

#endif
