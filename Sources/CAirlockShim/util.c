#if defined(__linux__)
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

ssize_t al_read_all(int fd, void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (char *)buf + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

ssize_t al_write_all(int fd, const void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/* One line on the status pipe. Lines are shorter than PIPE_BUF, so the writes
 * of the helper and of PID 1 never interleave. */
void al_status(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof(line) - 40) {
        /* every line ends with " @<CLOCK_MONOTONIC ns>" so airlock can say where the time goes */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        n += snprintf(line + n, sizeof(line) - (size_t)n, " @%lld", (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    }
    if ((size_t)n > sizeof(line) - 2) n = (int)sizeof(line) - 2;
    for (int i = 0; i < n; i++)
        if (line[i] == '\n') line[i] = ' ';
    line[n++] = '\n';
    (void)al_write_all(AL_STATUS_FD, line, (size_t)n);
}

void al_fail(const char *stage, int err, const char *fmt, ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    al_status("error %s %d %s", stage, err, msg);
    _exit(AL_EXIT_SETUP);
}

int al_write_file(const char *path, const char *data) {
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    size_t len = strlen(data);
    ssize_t n = al_write_all(fd, data, len);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)len ? 0 : -1;
}

/* mkdir -p inside the sandbox's own tmpfs root (no foreign symlinks there). */
int al_mkdir_p(const char *path, mode_t mode) {
    char buf[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(buf)) { errno = ENAMETOOLONG; return -1; }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char saved = buf[i];
            buf[i] = 0;
            if (mkdir(buf, mode) < 0 && errno != EEXIST) return -1;
            buf[i] = saved;
        }
    }
    return 0;
}
#endif
