/* main.c: ncl-server, a near-compute-log peer: holds SplitFT clients' logs in memory. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "rt/env.h"
#include "rt/fatal.h"
#include "rt/log.h"
#include "server.h"

static const char usage[] =
    "usage: ncl-server --listen HOST:PORT --capacity BYTES [options]\n"
    "\n"
    "A near-compute-log peer for SplitFT: keeps each client's log of small synchronous\n"
    "writes in memory until the client trims it. Clients reach it through SPLITFT_PEERS.\n"
    "\n"
    "  --listen HOST:PORT   address to listen on; port 0 picks a free one (printed)\n"
    "  --capacity BYTES     memory for logs, e.g. 256M or 1G; appends that would pass it\n"
    "                       are answered FULL (the client then flushes to its files)\n"
    "  --transport tcp|rdma default tcp; rdma needs an RDMA device and rdma-core\n"
    "  --max-frame BYTES    largest frame accepted, default 8M; a bigger one closes the\n"
    "                       connection that sent it\n"
    "  --max-conns N        connections served at once, default 1024\n"
    "  --help               this text\n"
    "\n"
    "Memory: logs never exceed --capacity; each connection also buffers at most about\n"
    "three frames. A malformed frame, a wrong CRC, an oversized frame or a peer that stops\n"
    "mid-frame closes that connection only. SIGTERM or SIGINT: clean shutdown, exit 0.\n"
    "Logging: SPLITFT_LOG=error|warn|info|debug (default warn), SPLITFT_LOG_FILE=path.\n"
    "On start it prints one line: 'ncl-server: listening on HOST:PORT ...'.\n";

static int bad(const char *what, const rt_err *e)
{
    fprintf(stderr, "ncl-server: %s: %s\n(see ncl-server --help)\n", what, e->msg);
    return 2;
}

int main(int argc, char **argv)
{
    static rt_logger lg = RT_LOGGER_INIT("ncl-server");
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"capacity", required_argument, NULL, 'c'},
                                         {"transport", required_argument, NULL, 't'},
                                         {"max-frame", required_argument, NULL, 'f'},
                                         {"max-conns", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    ncl_server_opts o = {
        .max_frame = NCL_FRAME_MAX_DEFAULT, .max_conns = 1024, .transport = &ncl_tcp_transport};
    rt_hostport hp;
    bool have_listen = false, have_cap = false;
    rt_err e = {0};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        uint64_t v;
        long long n;
        switch (ch) {
        case 'l':
            if (rt_parse_listen_addr(optarg, &hp, &e) < 0)
                return bad("--listen", &e);
            have_listen = true;
            break;
        case 'c':
            if (rt_parse_size(optarg, 1 << 20, 1ULL << 40, &v, &e) < 0)
                return bad("--capacity", &e);
            o.capacity = v;
            have_cap = true;
            break;
        case 't':
            o.transport = ncl_transport_get(optarg);
            if (!o.transport)
                return bad("--transport", &(rt_err){EINVAL, "accepted: tcp or rdma"});
            break;
        case 'f':
            if (rt_parse_size(optarg, 4096, 1u << 30, &v, &e) < 0)
                return bad("--max-frame", &e);
            o.max_frame = (uint32_t)v;
            break;
        case 'n':
            if (rt_parse_int(optarg, 1, 1000000, &n, &e) < 0)
                return bad("--max-conns", &e);
            o.max_conns = (int)n;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc || !have_listen || !have_cap) {
        fprintf(stderr, "ncl-server: %s\n%s",
                optind < argc ? "unexpected argument" : "--listen and --capacity are required",
                usage);
        return 2;
    }
    if (rt_log_configure(&lg, "SPLITFT", &e) < 0)
        return bad("configuration", &e);
    rt_install_crash_handlers(&lg);
    o.host = hp.host;
    o.port = hp.port;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);

    ncl_server *sv = ncl_server_new(&o, &lg, &e);
    if (!sv) {
        fprintf(stderr, "ncl-server: cannot listen on %s:%u (%s): %s\n", hp.host, hp.port,
                o.transport->name, e.msg);
        return 1;
    }
    char cap[32], mf[32];
    rt_format_size(o.capacity, cap, sizeof cap);
    rt_format_size(o.max_frame, mf, sizeof mf);
    fprintf(stderr, "ncl-server: listening on %s:%d transport %s capacity %s max-frame %s pid %d\n",
            hp.host, ncl_server_port(sv), o.transport->name, cap, mf, (int)getpid());
    int rc = ncl_server_run(sv, sfd);
    ncl_server_free(sv);
    close(sfd);
    fprintf(stderr, "ncl-server: stopped\n");
    return rc == 0 ? 0 : 1;
}
