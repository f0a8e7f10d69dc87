/* proto.c: encoding and validation of near-compute-log frames and records. */
#include "ncl/proto.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "rt/crc32c.h"

unsigned char *ncl_put_u8(unsigned char *p, uint8_t v)
{
    *p = v;
    return p + 1;
}

unsigned char *ncl_put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

unsigned char *ncl_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

unsigned char *ncl_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}

static uint16_t ld16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t ld32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const unsigned char *p) { return ld32(p) | (uint64_t)ld32(p + 4) << 32; }

bool ncl_get_u8(ncl_cur *c, uint8_t *v)
{
    if (c->bad || c->end - c->p < 1)
        return !(c->bad = true);
    *v = *c->p++;
    return true;
}

bool ncl_get_u32(ncl_cur *c, uint32_t *v)
{
    if (c->bad || c->end - c->p < 4)
        return !(c->bad = true);
    *v = ld32(c->p);
    c->p += 4;
    return true;
}

bool ncl_get_u64(ncl_cur *c, uint64_t *v)
{
    if (c->bad || c->end - c->p < 8)
        return !(c->bad = true);
    *v = ld64(c->p);
    c->p += 8;
    return true;
}

bool ncl_get_bytes(ncl_cur *c, size_t n, const unsigned char **v)
{
    if (c->bad || (size_t)(c->end - c->p) < n)
        return !(c->bad = true);
    *v = c->p;
    c->p += n;
    return true;
}

const char *ncl_type_name(int type)
{
    switch (type) {
    case NCL_HELLO:
        return "HELLO";
    case NCL_APPEND:
        return "APPEND";
    case NCL_TRIM:
        return "TRIM";
    case NCL_TRIM_FILE:
        return "TRIM_FILE";
    case NCL_RESET:
        return "RESET";
    case NCL_READ:
        return "READ";
    case NCL_STATS:
        return "STATS";
    case NCL_SYNC_DONE:
        return "SYNC_DONE";
    case NCL_R_OK:
        return "OK";
    case NCL_R_FENCED:
        return "FENCED";
    case NCL_R_GAP:
        return "GAP";
    case NCL_R_FULL:
        return "FULL";
    default:
        return NULL;
    }
}

void ncl_hdr_encode(unsigned char out[NCL_HDR_SIZE], uint8_t type, uint8_t flags, uint64_t req,
                    const struct iovec *iov, int iovcnt)
{
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    unsigned char *p = ncl_put_u32(out, NCL_MAGIC);
    p = ncl_put_u8(p, type);
    p = ncl_put_u8(p, flags);
    p = ncl_put_u16(p, 0);
    p = ncl_put_u32(p, (uint32_t)len);
    unsigned char *crcp = p;
    p = ncl_put_u32(p, 0);
    ncl_put_u64(p, req);
    uint32_t crc = rt_crc32c(0, out, NCL_HDR_SIZE);
    for (int i = 0; i < iovcnt; i++)
        crc = rt_crc32c(crc, iov[i].iov_base, iov[i].iov_len);
    ncl_put_u32(crcp, crc);
}

int ncl_hdr_decode(const unsigned char in[NCL_HDR_SIZE], uint32_t max_len, ncl_hdr *h, rt_err *err)
{
    if (ld32(in) != NCL_MAGIC)
        return rt_err_set(err, EPROTO, "bad frame magic %08x", ld32(in));
    h->type = in[4];
    h->flags = in[5];
    if (!ncl_type_name(h->type))
        return rt_err_set(err, EPROTO, "unknown frame type %u", h->type);
    if (ld16(in + 6) != 0)
        return rt_err_set(err, EPROTO, "reserved header bytes are not zero");
    h->len = ld32(in + 8);
    h->crc = ld32(in + 12);
    h->req = ld64(in + 16);
    if (h->len > max_len)
        return rt_err_set(err, EMSGSIZE, "frame of %u bytes exceeds the maximum of %u", h->len,
                          max_len);
    return 0;
}

int ncl_frame_verify(const unsigned char hdr[NCL_HDR_SIZE], const void *payload, uint32_t len,
                     rt_err *err)
{
    unsigned char h[NCL_HDR_SIZE];
    memcpy(h, hdr, NCL_HDR_SIZE);
    memset(h + 12, 0, 4);
    uint32_t crc = rt_crc32c(rt_crc32c(0, h, NCL_HDR_SIZE), payload, len);
    if (crc != ld32(hdr + 12))
        return rt_err_set(err, EBADMSG, "frame CRC mismatch (computed %08x, carried %08x)", crc,
                          ld32(hdr + 12));
    return 0;
}

size_t ncl_rec_size(const ncl_rec *r) { return NCL_REC_HDR_SIZE + r->path_len + (size_t)r->len; }

void ncl_rec_encode(unsigned char *out, ncl_rec *r)
{
    unsigned char *p = ncl_put_u64(out, r->seq);
    p = ncl_put_u64(p, r->dev);
    p = ncl_put_u64(p, r->ino);
    p = ncl_put_u64(p, r->offset);
    p = ncl_put_u32(p, r->len);
    p = ncl_put_u16(p, r->path_len);
    p = ncl_put_u8(p, r->kind);
    p = ncl_put_u8(p, r->flags);
    unsigned char *crcp = p;
    p = ncl_put_u32(p, 0);
    if (r->path_len)
        memcpy(p, r->path, r->path_len);
    p += r->path_len;
    if (r->len)
        memcpy(p, r->data, r->len);
    r->crc = rt_crc32c(0, out, ncl_rec_size(r));
    ncl_put_u32(crcp, r->crc);
}

int ncl_rec_decode(const unsigned char *in, size_t avail, ncl_rec *r, size_t *used, rt_err *err)
{
    if (avail < NCL_REC_HDR_SIZE)
        return rt_err_set(err, EPROTO, "truncated record header (%zu bytes)", avail);
    r->seq = ld64(in);
    r->dev = ld64(in + 8);
    r->ino = ld64(in + 16);
    r->offset = ld64(in + 24);
    r->len = ld32(in + 32);
    r->path_len = ld16(in + 36);
    r->kind = in[38];
    r->flags = in[39];
    r->crc = ld32(in + 40);
    if (r->kind != NCL_REC_WRITE && r->kind != NCL_REC_TOMBSTONE)
        return rt_err_set(err, EPROTO, "record %llu has unknown kind %u",
                          (unsigned long long)r->seq, r->kind);
    if (r->path_len > NCL_PATH_MAX)
        return rt_err_set(err, EPROTO, "record %llu path length %u over %d",
                          (unsigned long long)r->seq, r->path_len, NCL_PATH_MAX);
    size_t size = ncl_rec_size(r);
    if (size > avail)
        return rt_err_set(err, EPROTO, "record %llu truncated: %zu of %zu bytes",
                          (unsigned long long)r->seq, avail, size);
    if (r->offset > (uint64_t)INT64_MAX - r->len)
        return rt_err_set(err, EPROTO, "record %llu offset out of range",
                          (unsigned long long)r->seq);
    unsigned char zero[4] = {0};
    uint32_t crc = rt_crc32c(0, in, 40);
    crc = rt_crc32c(crc, zero, 4);
    crc = rt_crc32c(crc, in + NCL_REC_HDR_SIZE, size - NCL_REC_HDR_SIZE);
    if (crc != r->crc)
        return rt_err_set(err, EBADMSG, "record %llu CRC mismatch", (unsigned long long)r->seq);
    r->path = (const char *)in + NCL_REC_HDR_SIZE;
    r->data = in + NCL_REC_HDR_SIZE + r->path_len;
    *used = size;
    return 0;
}

bool ncl_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > NCL_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)id[i]) && id[i] != '.' && id[i] != '_' && id[i] != '-')
            return false;
    return true;
}
