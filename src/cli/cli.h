#ifndef HERALD_CLI_CLI_H
#define HERALD_CLI_CLI_H
/* Owns: the client commands of the herald binary (`herald publish`, `herald subscribe`).
 * Each takes the command's own argv (argv[0] is the command name) and returns the process exit
 * status: 0 success, 1 server or connection error, 2 usage error. */

int cli_publish_main(int argc, char **argv);   /* argv[0] == "publish" */
int cli_subscribe_main(int argc, char **argv); /* argv[0] == "subscribe" */

#endif
