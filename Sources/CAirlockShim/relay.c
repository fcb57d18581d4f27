/*
 * The egress relay: PID 1's half of the proxied network mode.
 *
 * The sandbox has only its loopback. With an AL_EGRESS record in the plan, PID 1
 * listens on 127.0.0.1:<port> and [::1]:<port> (opened before it drops its
 * privileges, so a port below 1024 works too) and relays every connection to the
 * egress gateway's Unix socket, bind-mounted read-only at /run/airlock. The
 * gateway knows which sandbox a connection belongs to by the socket it arrives
 * on, so nothing the sandbox sends can claim another identity.
 *
 * PID 1 must never block or die here: every descriptor is non-blocking, one
 * epoll set serves the signalfd, the listeners and the connections; each
 * direction of a connection has a bounded buffer, and a side is not read while
 * the buffer it fills is full (backpressure); sends use MSG_NOSIGNAL. A side's
 * EOF becomes a shutdown(SHUT_WR) of the other once its buffer is flushed; the
 * pair is closed when both directions are done, and reset on an error. At most
 * RELAY_MAX_CONNS connections are relayed at once; beyond that a new one is reset.
 *
 * When the gateway stops reading early (a 403 sent before the request body was
 * read, then close), what the client still sends is read and dropped for up to
 * RELAY_LINGER_MS while the answer reaches it: closing a TCP socket with unread
 * data would reset it, and the client could lose the answer ("lingering close").
 * For the same reason ECONNRESET from the gateway's side, which a Unix socket
 * reports when its peer closed with bytes left unread, ends that direction like
 * an EOF once everything before it has been relayed.
 */
#if defined(__linux__)
#include "sandbox.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define RELAY_BUF (64u << 10)        /* per direction and connection */
#define RELAY_MAX_CONNS 1024
#define RELAY_ACCEPT_BATCH 64        /* accepts per wake-up, so one flood cannot starve the rest */
#define RELAY_EVENTS 64
#define RELAY_RETRY_MS 10            /* the gateway's backlog is full: try again after */
#define RELAY_GIVE_UP_MS 5000        /* ... for at most this long */
#define RELAY_PAUSE_MS 100           /* out of descriptors: stop accepting for this long */
#define RELAY_LINGER_MS 2000         /* drain a client whose gateway stopped reading, at most this long */

enum { EP_SIGNAL, EP_LISTENER, EP_CONN };
enum { C_CONNECTING, C_RETRY, C_OPEN, C_DEAD };

struct relay_conn;

/* What an epoll event points at. `events` is the registered interest; 0 means the
 * descriptor is not in the epoll set at all, so that a hang-up nobody wants to hear
 * about cannot wake the loop again and again. */
struct endpoint {
    int kind;
    int fd;
    uint32_t events;
    struct relay_conn *conn;
    int side;
};

struct buffer {
    char *data;
    size_t start, end;
};

struct relay_conn {
    struct endpoint end[2]; /* 0: the sandbox's TCP client, 1: the gateway's Unix socket */
    struct buffer buf[2];   /* buf[i] holds bytes read from end[i], to be written to end[1 - i] */
    unsigned char eof[2];   /* nothing more will be read from end[i] */
    unsigned char shut[2];  /* end[i]'s write side is shut */
    unsigned char draining; /* the gateway stopped reading: the client's bytes are dropped */
    unsigned char state;
    uint64_t timer;         /* 0, or when on_timer is due: C_RETRY's next connect, or the drain's end */
    uint64_t give_up_at;    /* C_RETRY: the gateway stayed busy until then */
    size_t index;           /* in relay->conns */
    struct relay_conn *next_dead;
};

struct al_relay {
    int ep;
    int port;
    struct sockaddr_un gateway;
    socklen_t gateway_len;
    struct endpoint listener[2];
    int nlisteners;
    struct endpoint signal;
    struct endpoint control; /* a long-lived sandbox's control socket (service.c), also EP_SIGNAL */
    struct relay_conn *conns[RELAY_MAX_CONNS];
    size_t nconns;
    size_t timers;          /* connections with a timer set */
    uint64_t paused_until; /* listeners out of the epoll set until then (0: not paused) */
    struct relay_conn *dead; /* closed during the current batch of events; freed after it */
    int warned;
};

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int set_interest(struct al_relay *r, struct endpoint *e, uint32_t want) {
    if (e->fd < 0 || want == e->events) return 0;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = want;
    ev.data.ptr = e;
    int op = e->events == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(r->ep, op, e->fd, &ev) < 0) return -1;
    e->events = want;
    return 0;
}

/* Closes a descriptor; `reset` makes a TCP socket send RST instead of FIN, so the
 * client sees a failure rather than a clean (and possibly truncated) end of stream. */
static void close_socket(int fd, int reset) {
    if (fd < 0) return;
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(fd);
}

static void pause_listeners(struct al_relay *r) {
    for (int i = 0; i < r->nlisteners; i++) (void)set_interest(r, &r->listener[i], 0);
    r->paused_until = now_ms() + RELAY_PAUSE_MS;
}

static void resume_listeners(struct al_relay *r) {
    if (!r->paused_until) return;
    r->paused_until = 0;
    for (int i = 0; i < r->nlisteners; i++) (void)set_interest(r, &r->listener[i], EPOLLIN);
}

static void set_timer(struct al_relay *r, struct relay_conn *c, uint64_t at) {
    if (!c->timer && at) r->timers++;
    if (c->timer && !at) r->timers--;
    c->timer = at;
}

static void end_conn(struct al_relay *r, struct relay_conn *c, int reset) {
    if (c->state == C_DEAD) return;
    set_timer(r, c, 0);
    c->state = C_DEAD;
    for (int i = 0; i < 2; i++) {
        (void)set_interest(r, &c->end[i], 0);
        close_socket(c->end[i].fd, reset && i == 0);
        c->end[i].fd = -1;
    }
    size_t last = --r->nconns;
    r->conns[c->index] = r->conns[last];
    r->conns[c->index]->index = c->index;
    r->conns[last] = NULL;
    c->next_dead = r->dead;
    r->dead = c;
    resume_listeners(r); /* descriptors were freed */
}

static void free_dead(struct al_relay *r) {
    while (r->dead) {
        struct relay_conn *c = r->dead;
        r->dead = c->next_dead;
        free(c->buf[0].data);
        free(c);
    }
}

static void gateway_unreachable(struct al_relay *r, int err) {
    if (r->warned) return;
    r->warned = 1;
    al_status("warn egress the egress gateway's socket %s cannot be reached (errno %d): "
              "connections to 127.0.0.1:%d inside the sandbox are being closed",
              r->gateway.sun_path, err, r->port);
}

/* The interest each side needs now: read where the buffer it fills has room, write
 * where the buffer it drains has bytes. */
static void update(struct al_relay *r, struct relay_conn *c) {
    uint32_t want[2] = {0, 0};
    if (c->state == C_DEAD) return;
    if (c->state == C_CONNECTING) want[1] = EPOLLOUT;
    if (c->state == C_OPEN) {
        for (int d = 0; d < 2; d++) {
            if (!c->eof[d] && c->buf[d].end - c->buf[d].start < RELAY_BUF) want[d] |= EPOLLIN;
            if (c->buf[d].end > c->buf[d].start) want[1 - d] |= EPOLLOUT;
        }
    }
    for (int i = 0; i < 2; i++)
        if (set_interest(r, &c->end[i], want[i]) < 0) { end_conn(r, c, 1); return; }
}

/* Reads what end[s] has into buf[s] (and drops it while draining the client). */
static void pump_in(struct al_relay *r, struct relay_conn *c, int s) {
    struct buffer *b = &c->buf[s];
    if (c->eof[s] || c->state != C_OPEN) return;
    if (b->start == b->end) b->start = b->end = 0;
    if (b->end == RELAY_BUF && b->start > 0) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    if (b->end == RELAY_BUF) return; /* full: backpressure */
    ssize_t n;
    do { n = recv(c->end[s].fd, b->data + b->end, RELAY_BUF - b->end, MSG_DONTWAIT); } while (n < 0 && errno == EINTR);
    if (n > 0) {
        b->end += (size_t)n;
        if (s == 0 && c->draining) b->start = b->end = 0;
    } else if (n == 0 || (s == 1 && errno == ECONNRESET)) {
        c->eof[s] = 1;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        end_conn(r, c, 1); /* the client reset, or worse */
    }
}

/* Writes buf[1 - t] to end[t]. When end[t] can take nothing more (EPIPE, ECONNRESET),
 * that direction is over and its bytes are dropped. A client that is gone is read no
 * more; a gateway that is gone leaves the client drained until the answer is through. */
static void pump_out(struct al_relay *r, struct relay_conn *c, int t) {
    struct buffer *b = &c->buf[1 - t];
    if (c->state != C_OPEN) return;
    while (b->end > b->start) {
        ssize_t n = send(c->end[t].fd, b->data + b->start, b->end - b->start, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) { b->start += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        b->start = b->end = 0;
        c->shut[t] = 1;
        if (t == 0) {
            c->eof[1] = 1;
        } else if (!c->eof[0]) {
            c->draining = 1;
            set_timer(r, c, now_ms() + RELAY_LINGER_MS);
        }
        break;
    }
    if (b->start == b->end) b->start = b->end = 0;
}

/* Passes each finished direction's EOF on; closes the pair once both are finished
 * (a drained client included). */
static void settle(struct al_relay *r, struct relay_conn *c) {
    if (c->state != C_OPEN) return;
    for (int d = 0; d < 2; d++) {
        if (c->eof[d] && c->buf[d].start == c->buf[d].end && !c->shut[1 - d]) {
            c->shut[1 - d] = 1;
            (void)shutdown(c->end[1 - d].fd, SHUT_WR);
        }
    }
    if (c->shut[0] && c->shut[1] && c->eof[0] && c->eof[1]) end_conn(r, c, 0);
}

static void try_connect(struct al_relay *r, struct relay_conn *c) {
    int rc = connect(c->end[1].fd, (const struct sockaddr *)&r->gateway, r->gateway_len);
    int err = rc == 0 ? 0 : errno;
    set_timer(r, c, 0);
    if (rc == 0 || err == EISCONN) {
        c->state = C_OPEN;
    } else if (err == EINPROGRESS) {
        c->state = C_CONNECTING;
    } else if (err == EAGAIN || err == EINTR) {
        /* A Unix socket's backlog is full: the gateway is busy, not gone. */
        uint64_t now = now_ms();
        if (c->state != C_RETRY) {
            c->state = C_RETRY;
            c->give_up_at = now + RELAY_GIVE_UP_MS;
        }
        if (now >= c->give_up_at) {
            gateway_unreachable(r, err);
            end_conn(r, c, 1);
            return;
        }
        set_timer(r, c, now + RELAY_RETRY_MS);
    } else {
        gateway_unreachable(r, err);
        end_conn(r, c, 1);
        return;
    }
    update(r, c);
}

static void open_conn(struct al_relay *r, int client) {
    struct relay_conn *c = calloc(1, sizeof(*c));
    char *mem = malloc(2 * (size_t)RELAY_BUF);
    int up = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!c || !mem || up < 0) {
        if (up < 0 && (errno == EMFILE || errno == ENFILE)) pause_listeners(r);
        if (up >= 0) close(up);
        free(mem);
        free(c);
        close_socket(client, 1);
        return;
    }
    int one = 1;
    (void)setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (int i = 0; i < 2; i++) {
        c->end[i] = (struct endpoint){.kind = EP_CONN, .fd = i == 0 ? client : up, .events = 0, .conn = c, .side = i};
        c->buf[i].data = mem + (size_t)i * RELAY_BUF;
    }
    c->state = C_CONNECTING;
    c->index = r->nconns;
    r->conns[r->nconns++] = c;
    try_connect(r, c);
}

static void accept_clients(struct al_relay *r, struct endpoint *l) {
    for (int i = 0; i < RELAY_ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) pause_listeners(r);
            return; /* EAGAIN: nothing more to accept */
        }
        if (r->nconns >= RELAY_MAX_CONNS) {
            close_socket(fd, 1);
            continue;
        }
        open_conn(r, fd);
        if (r->paused_until) return;
    }
}

/* A connection's timer is due: the next connect attempt, or the end of a drain. */
static void on_timer(struct al_relay *r, struct relay_conn *c) {
    set_timer(r, c, 0);
    if (c->state == C_RETRY) {
        try_connect(r, c);
        return;
    }
    if (c->state != C_OPEN) return;
    c->eof[0] = 1; /* stop draining: what the client still sends meets a reset */
    c->buf[0].start = c->buf[0].end = 0;
    settle(r, c);
    update(r, c);
}

/* Errors (EPOLLERR) and hang-ups surface through the reads and writes they make fail,
 * after the bytes that were still queued. */
static void conn_event(struct al_relay *r, struct endpoint *e, uint32_t ev) {
    struct relay_conn *c = e->conn;
    int s = e->side;
    if (c->state == C_DEAD) return; /* ended earlier in this batch */
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            gateway_unreachable(r, err);
            end_conn(r, c, 1);
            return;
        }
        c->state = C_OPEN;
        update(r, c);
        return;
    }
    if (c->state != C_OPEN) return;
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        pump_in(r, c, s);
        pump_out(r, c, 1 - s); /* forward what was just read without another round trip */
    }
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) pump_out(r, c, s);
    settle(r, c);
    update(r, c);
}

static int open_listener(struct al_relay *r, int family, int port) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    /* No SO_REUSEPORT: nothing in the sandbox can bind the port beside PID 1. */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc;
    if (family == AF_INET) {
        struct sockaddr_in a;
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
    } else {
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) { close(fd); return -1; }
        struct sockaddr_in6 a;
        memset(&a, 0, sizeof(a));
        a.sin6_family = AF_INET6;
        a.sin6_port = htons((uint16_t)port);
        a.sin6_addr = in6addr_loopback;
        rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
    }
    if (rc < 0 || listen(fd, SOMAXCONN) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    struct endpoint *l = &r->listener[r->nlisteners++];
    *l = (struct endpoint){.kind = EP_LISTENER, .fd = fd, .events = 0, .conn = NULL, .side = 0};
    if (set_interest(r, l, EPOLLIN) < 0) al_fail("egress", errno, "watch the loopback listener");
    return 0;
}

struct al_relay *al_relay_open(const struct al_plan *plan) {
    const struct al_record *rec = NULL;
    for (size_t i = 0; i < plan->count; i++)
        if (plan->records[i].tag == AL_EGRESS) rec = &plan->records[i];
    if (!rec) return NULL;
    uint64_t port;
    char *path = al_field_str(rec, 1);
    if (al_field_u64(rec, 0, &port) || !path || port == 0 || port > 65535)
        al_fail("egress", EINVAL, "malformed egress record");
    struct al_relay *r = calloc(1, sizeof(*r));
    if (!r) al_fail("egress", ENOMEM, "allocate the egress relay");
    if (strlen(path) >= sizeof(r->gateway.sun_path))
        al_fail("egress", ENAMETOOLONG, "the egress socket path %s is too long for a Unix socket", path);
    r->gateway.sun_family = AF_UNIX;
    memcpy(r->gateway.sun_path, path, strlen(path) + 1);
    r->gateway_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
    r->port = (int)port;
    free(path);

    /* A peer that goes away must cost an EPIPE, not PID 1 (sends also use MSG_NOSIGNAL). */
    signal(SIGPIPE, SIG_IGN);
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    if (r->ep < 0) al_fail("egress", errno, "epoll_create1");
    if (open_listener(r, AF_INET, r->port) < 0)
        al_fail("egress", errno, "listen on 127.0.0.1:%d for the egress gateway", r->port);
    if (open_listener(r, AF_INET6, r->port) < 0) {
        int e = errno;
        /* No IPv6 in this kernel or network namespace: 127.0.0.1 is enough. */
        if (e != EAFNOSUPPORT && e != EADDRNOTAVAIL && e != EPROTONOSUPPORT)
            al_fail("egress", e, "listen on [::1]:%d for the egress gateway", r->port);
    }
    r->signal = (struct endpoint){.kind = EP_SIGNAL, .fd = -1, .events = 0, .conn = NULL, .side = 0};
    r->control = (struct endpoint){.kind = EP_SIGNAL, .fd = -1, .events = 0, .conn = NULL, .side = 0};
    al_status("egress %d", r->port);
    return r;
}

void al_relay_wait(struct al_relay *r, int sfd) { al_relay_wait2(r, sfd, -1); }

void al_relay_wait2(struct al_relay *r, int sfd, int ctl) {
    if (!r) {
        struct pollfd p[2] = {{.fd = sfd, .events = POLLIN, .revents = 0}, {.fd = ctl, .events = POLLIN, .revents = 0}};
        (void)poll(p, ctl >= 0 ? 2 : 1, -1);
        return;
    }
    if (r->signal.fd != sfd) {
        r->signal.fd = sfd;
        r->signal.events = 0;
        if (set_interest(r, &r->signal, EPOLLIN) < 0) {
            /* Cannot happen with a valid signalfd; if it does, reaping matters more. */
            r->signal.fd = -1;
            return;
        }
    }
    if (ctl >= 0 && r->control.fd != ctl) {
        r->control.fd = ctl;
        r->control.events = 0;
        if (set_interest(r, &r->control, EPOLLIN) < 0) {
            r->control.fd = -1;
            return;
        }
    }
    for (;;) {
        uint64_t now = now_ms();
        uint64_t next = UINT64_MAX;
        if (r->paused_until) next = r->paused_until;
        for (size_t i = 0; r->timers && i < r->nconns; i++)
            if (r->conns[i]->timer && r->conns[i]->timer < next) next = r->conns[i]->timer;
        int timeout = next == UINT64_MAX ? -1 : next <= now ? 0 : next - now > 60000 ? 60000 : (int)(next - now);

        struct epoll_event evs[RELAY_EVENTS];
        int n = epoll_wait(r->ep, evs, RELAY_EVENTS, timeout);
        if (n < 0 && errno != EINTR) return; /* the caller's blocking read of the signalfd still reaps */
        int signalled = 0;
        for (int i = 0; i < n; i++) {
            struct endpoint *e = evs[i].data.ptr;
            switch (e->kind) {
            case EP_SIGNAL: signalled = 1; break;
            case EP_LISTENER: accept_clients(r, e); break;
            default: conn_event(r, e, evs[i].events); break;
            }
        }
        now = now_ms();
        if (r->paused_until && now >= r->paused_until) resume_listeners(r);
        for (size_t i = 0; r->timers && i < r->nconns;) {
            struct relay_conn *c = r->conns[i];
            if (c->timer && c->timer <= now) on_timer(r, c);
            /* on_timer may end c, moving the last connection into slot i */
            if (i < r->nconns && r->conns[i] == c) i++;
        }
        free_dead(r);
        if (signalled) return;
    }
}
#endif
