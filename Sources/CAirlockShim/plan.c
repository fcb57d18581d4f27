#if defined(__linux__)
#include "sandbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AL_PLAN_MAX (16u << 20) /* a plan is a few KiB; refuse anything absurd */

static int get_u32(const uint8_t *p, size_t avail, uint32_t *out) {
    if (avail < 4) return -1;
    *out = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return 0;
}

/* Reads and validates the whole plan. Every length is bounds-checked: a
 * malformed plan is refused, never partially applied. */
int al_plan_read(int fd, struct al_plan *plan) {
    struct stat st;
    memset(plan, 0, sizeof(*plan));
    if (fstat(fd, &st) < 0) return -1;
    if (st.st_size < 4 || (uint64_t)st.st_size > AL_PLAN_MAX) { errno = EINVAL; return -1; }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = malloc(size);
    if (!buf) return -1;
    if (lseek(fd, 0, SEEK_SET) < 0 || al_read_all(fd, buf, size) != (ssize_t)size) { free(buf); errno = EIO; return -1; }
    return al_plan_parse(buf, size, plan);
}

/* Takes ownership of `buf` (freed on error, and by the plan's owner otherwise). */
int al_plan_parse(uint8_t *buf, size_t size, struct al_plan *plan) {
    memset(plan, 0, sizeof(*plan));
    if (size < 4 || size > AL_PLAN_MAX || memcmp(buf, "ALP1", 4) != 0) { free(buf); errno = EINVAL; return -1; }

    size_t cap = 64, count = 0, off = 4;
    struct al_record *recs = calloc(cap, sizeof(*recs));
    if (!recs) { free(buf); return -1; }
    while (off < size) {
        uint32_t tag, n;
        if (get_u32(buf + off, size - off, &tag) || get_u32(buf + off + 4, size - off - 4, &n)) goto bad;
        off += 8;
        if (n > 4096) goto bad;
        struct al_field *fields = calloc(n ? n : 1, sizeof(*fields));
        if (!fields) goto bad;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t len;
            if (get_u32(buf + off, size - off, &len)) { free(fields); goto bad; }
            off += 4;
            if (len > size - off) { free(fields); goto bad; }
            fields[i].data = buf + off;
            fields[i].len = len;
            off += len;
        }
        if (count == cap) {
            cap *= 2;
            struct al_record *grown = realloc(recs, cap * sizeof(*recs));
            if (!grown) { free(fields); goto bad; }
            recs = grown;
        }
        recs[count].tag = tag;
        recs[count].nfields = n;
        recs[count].fields = fields;
        count++;
    }
    plan->records = recs;
    plan->count = count;
    plan->buffer = buf;
    return 0;
bad:
    for (size_t i = 0; i < count; i++) free(recs[i].fields);
    free(recs);
    free(buf);
    errno = EINVAL;
    return -1;
}

int al_field_u64(const struct al_record *r, uint32_t i, uint64_t *out) {
    if (i >= r->nfields || r->fields[i].len != 8) return -1;
    const uint8_t *p = r->fields[i].data;
    uint64_t v = 0;
    for (int b = 7; b >= 0; b--) v = v << 8 | p[b];
    *out = v;
    return 0;
}

char *al_field_str(const struct al_record *r, uint32_t i) {
    if (i >= r->nfields) return NULL;
    const struct al_field *f = &r->fields[i];
    if (memchr(f->data, 0, f->len)) return NULL; /* embedded NUL: refuse */
    char *s = malloc((size_t)f->len + 1);
    if (!s) return NULL;
    memcpy(s, f->data, f->len);
    s[f->len] = 0;
    return s;
}
void al_plan_free(struct al_plan *plan) {
    for (size_t i = 0; i < plan->count; i++) free(plan->records[i].fields);
    free(plan->records);
    free(plan->buffer);
    memset(plan, 0, sizeof(*plan));
}
#endif
