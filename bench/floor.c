/* The floor for cold-start benchmarks: a Lambda runtime that does nothing but ask the
 * Runtime API for its first invocation. Exec -> first GET next of this program is the
 * least any runtime can take on this machine. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    if (api == NULL) return 2;
    char host[256];
    snprintf(host, sizeof host, "%s", api);
    char *port = strrchr(host, ':');
    if (port == NULL) return 2;
    *port++ = '\0';
    struct addrinfo hints = {0}, *addr;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &addr) != 0) return 3;
    int fd = socket(addr->ai_family, addr->ai_socktype, addr->ai_protocol);
    if (fd < 0 || connect(fd, addr->ai_addr, addr->ai_addrlen) != 0) return 4;
    dprintf(fd, "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: %s\r\n\r\n", api);
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    return 0;
}
