/* io_ply.c: PLY point clouds (ascii 1.0 and binary_little_endian 1.0): the vertex element's
 * x, y, z, whatever their numeric type and position among other properties; every other
 * property and element (faces, lists, before or after the vertices) is parsed and skipped.
 * Refusals (MN_EFORMAT) name the header line, or the element and row, and what is accepted.
 *
 * Sections: types, header, body, entry point. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "io_ply.c decodes binary_little_endian values with memcpy: a big-endian host needs swaps"
#endif

#define PLY_MAX_ELEMS 32
#define PLY_MAX_PROPS 128
#define PLY_MAX_TOKS  6
#define SHOWN(t)      (int)((t).n < 40 ? (t).n : 40), (t).s /* a token in a message */

/* ---- types ------------------------------------------------------------------------------ */

typedef enum ply_type { T_NONE, T_I8, T_U8, T_I16, T_U16, T_I32, T_U32, T_F32, T_F64 } ply_type;

static const struct {
    const char *name;
    ply_type type;
} type_names[] = {
    {"char", T_I8},   {"uchar", T_U8},   {"short", T_I16},   {"ushort", T_U16},
    {"int", T_I32},   {"uint", T_U32},   {"float", T_F32},   {"double", T_F64},
    {"int8", T_I8},   {"uint8", T_U8},   {"int16", T_I16},   {"uint16", T_U16},
    {"int32", T_I32}, {"uint32", T_U32}, {"float32", T_F32}, {"float64", T_F64},
};

static size_t type_size(ply_type t)
{
    static const size_t size[] = {0, 1, 1, 2, 2, 4, 4, 4, 8};
    return size[t];
}

static double decode(const unsigned char *p, ply_type t)
{
    union {
        int8_t i8;
        uint8_t u8;
        int16_t i16;
        uint16_t u16;
        int32_t i32;
        uint32_t u32;
        float f32;
        double f64;
    } v;
    memcpy(&v, p, type_size(t));
    switch (t) {
    case T_I8:
        return v.i8;
    case T_U8:
        return v.u8;
    case T_I16:
        return v.i16;
    case T_U16:
        return v.u16;
    case T_I32:
        return v.i32;
    case T_U32:
        return v.u32;
    case T_F32:
        return v.f32;
    default:
        return v.f64;
    }
}

/* ---- header ----------------------------------------------------------------------------- */

typedef struct tok {
    const char *s;
    size_t n;
} tok;

typedef struct ply_prop {
    ply_type type;       /* scalar type, or the item type of a list */
    ply_type count_type; /* T_NONE: a scalar */
    int axis;            /* 0, 1, 2: x, y, z of the vertex element; -1: skipped */
} ply_prop;

typedef struct ply_elem {
    char name[32];
    uint64_t count;
    int nprops;
    ply_prop props[PLY_MAX_PROPS];
} ply_elem;

typedef struct ply_header {
    bool binary;
    int nelems;
    int vertex; /* index of the vertex element, -1 while none */
    bool axis_seen[3];
    size_t body; /* offset of the first byte after end_header */
    ply_elem elems[PLY_MAX_ELEMS];
} ply_header;

static bool tok_eq(tok t, const char *s) { return t.n == strlen(s) && memcmp(t.s, s, t.n) == 0; }

/* Split a line on spaces, tabs and '\r'; fills at most max tokens, returns how many there are. */
static int split(const char *s, size_t n, tok *t, int max)
{
    int nt = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
            i++;
        size_t start = i;
        while (i < n && s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            i++;
        if (i > start && nt++ < max)
            t[nt - 1] = (tok){s + start, i - start};
    }
    return nt;
}

static ply_type parse_type(tok t)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (tok_eq(t, type_names[i].name))
            return type_names[i].type;
    return T_NONE;
}

static mn_status parse_format(const tok *t, int nt, ply_header *h)
{
    if (nt != 3 || !tok_eq(t[0], "format"))
        return mn_fail(MN_EFORMAT, "header line 2: expected 'format FORMAT 1.0'");
    if (tok_eq(t[1], "binary_big_endian"))
        return mn_fail(
            MN_EFORMAT,
            "binary_big_endian PLY is not supported (accepted: ascii, binary_little_endian)");
    if (!tok_eq(t[1], "ascii") && !tok_eq(t[1], "binary_little_endian"))
        return mn_fail(
            MN_EFORMAT,
            "header line 2: unknown format '%.*s' (accepted: ascii, binary_little_endian)",
            SHOWN(t[1]));
    if (!tok_eq(t[2], "1.0"))
        return mn_fail(MN_EFORMAT, "header line 2: PLY version '%.*s' (accepted: 1.0)",
                       SHOWN(t[2]));
    h->binary = tok_eq(t[1], "binary_little_endian");
    return MN_OK;
}

static mn_status parse_count(tok t, size_t line, uint64_t *count)
{
    uint64_t x = 0;
    for (size_t i = 0; i < t.n; i++) {
        unsigned d = (unsigned)(t.s[i] - '0');
        if (d > 9 || x > (UINT64_MAX - d) / 10)
            return mn_fail(MN_EFORMAT,
                           "header line %zu: element count '%.*s' is not a 64-bit count", line,
                           SHOWN(t));
        x = x * 10 + d;
    }
    *count = x;
    return MN_OK;
}

static mn_status parse_element(const tok *t, int nt, size_t line, ply_header *h)
{
    if (nt != 3)
        return mn_fail(MN_EFORMAT, "header line %zu: expected 'element NAME COUNT'", line);
    if (h->nelems == PLY_MAX_ELEMS)
        return mn_fail(MN_EFORMAT, "header line %zu: more than %d elements", line, PLY_MAX_ELEMS);
    ply_elem *e = &h->elems[h->nelems];
    if (tok_eq(t[1], "vertex")) {
        if (h->vertex >= 0)
            return mn_fail(MN_EFORMAT, "header line %zu: a second vertex element", line);
        h->vertex = h->nelems;
    }
    size_t n = t[1].n < sizeof e->name - 1 ? t[1].n : sizeof e->name - 1;
    memcpy(e->name, t[1].s, n);
    e->name[n] = '\0';
    h->nelems++;
    return parse_count(t[2], line, &e->count);
}

/* The role of a vertex property: 0, 1, 2 for x, y, z, -1 for anything else. */
static int axis_of(const ply_header *h, tok name)
{
    if (h->vertex != h->nelems - 1 || name.n != 1 || name.s[0] < 'x' || name.s[0] > 'z')
        return -1;
    return name.s[0] - 'x';
}

static mn_status parse_property(const tok *t, int nt, size_t line, ply_header *h)
{
    if (h->nelems == 0)
        return mn_fail(MN_EFORMAT, "header line %zu: property before any element", line);
    ply_elem *e = &h->elems[h->nelems - 1];
    if (e->nprops == PLY_MAX_PROPS)
        return mn_fail(MN_EFORMAT, "header line %zu: more than %d properties in element '%s'", line,
                       PLY_MAX_PROPS, e->name);
    bool list = nt >= 2 && tok_eq(t[1], "list");
    if (nt != (list ? 5 : 3))
        return mn_fail(
            MN_EFORMAT,
            "header line %zu: expected 'property TYPE NAME' or 'property list COUNT_TYPE ITEM_TYPE NAME'",
            line);
    ply_prop *p = &e->props[e->nprops];
    p->count_type = list ? parse_type(t[2]) : T_NONE;
    p->type = parse_type(t[list ? 3 : 1]);
    if (p->type == T_NONE || (list && (p->count_type == T_NONE || p->count_type >= T_F32)))
        return mn_fail(
            MN_EFORMAT,
            "header line %zu: bad property type (accepted: char uchar short ushort int uint float double, int8 ... float64; list counts: integer types)",
            line);
    p->axis = axis_of(h, t[nt - 1]);
    if (p->axis >= 0 && (list || h->axis_seen[p->axis]))
        return mn_fail(MN_EFORMAT, "header line %zu: vertex property '%c' is %s", line,
                       'x' + p->axis, list ? "a list" : "declared twice");
    if (p->axis >= 0)
        h->axis_seen[p->axis] = true;
    e->nprops++;
    return MN_OK;
}

static mn_status header_line(const tok *t, int nt, size_t line, ply_header *h)
{
    if (nt == 0 || tok_eq(t[0], "comment") || tok_eq(t[0], "obj_info"))
        return MN_OK;
    if (tok_eq(t[0], "element"))
        return parse_element(t, nt, line, h);
    if (tok_eq(t[0], "property"))
        return parse_property(t, nt, line, h);
    return mn_fail(
        MN_EFORMAT,
        "header line %zu: unknown keyword '%.*s' (accepted: comment, obj_info, element, property, end_header)",
        line, SHOWN(t[0]));
}

static mn_status check_vertex(const ply_header *h)
{
    if (h->vertex < 0)
        return mn_fail(MN_EFORMAT, "no vertex element in the header");
    for (int a = 0; a < 3; a++)
        if (!h->axis_seen[a])
            return mn_fail(MN_EFORMAT, "the vertex element has no '%c' property", 'x' + a);
    return MN_OK;
}

static mn_status parse_header(const char *b, size_t len, ply_header *h)
{
    h->vertex = -1;
    for (size_t pos = 0, line = 1;; line++) {
        const char *nl = memchr(b + pos, '\n', len - pos);
        if (!nl)
            return mn_fail(MN_EFORMAT, line == 1 ? "not a PLY file: no first line 'ply'"
                                                 : "header: no end_header line");
        tok t[PLY_MAX_TOKS];
        int nt = split(b + pos, (size_t)(nl - (b + pos)), t, PLY_MAX_TOKS);
        pos = (size_t)(nl - b) + 1;
        mn_status s = MN_OK;
        if (line == 1 && (nt != 1 || !tok_eq(t[0], "ply")))
            return mn_fail(MN_EFORMAT, "not a PLY file: the first line is not 'ply'");
        if (line == 2)
            s = parse_format(t, nt, h);
        else if (line > 2 && nt >= 1 && tok_eq(t[0], "end_header")) {
            h->body = pos;
            return nt == 1 ? check_vertex(h)
                           : mn_fail(MN_EFORMAT, "header line %zu: text after end_header", line);
        } else if (line > 2)
            s = header_line(t, nt, line, h);
        if (s != MN_OK)
            return s;
    }
}

/* ---- body ------------------------------------------------------------------------------- */

typedef struct body {
    const char *b;
    size_t pos, len, line; /* line: ascii only, for messages */
    bool binary;
    const ply_elem *e; /* where we are, for messages */
    uint64_t row;
} body;

static mn_status truncated(const body *r)
{
    return mn_fail(
        MN_EFORMAT, "truncated: the file ends (%zu bytes) inside element '%s' row %llu of %llu",
        r->len, r->e->name, (unsigned long long)r->row + 1, (unsigned long long)r->e->count);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static void skip_space(body *r)
{
    while (r->pos < r->len && is_space(r->b[r->pos]))
        r->line += r->b[r->pos++] == '\n';
}

static mn_status next_ascii(body *r, double *v)
{
    skip_space(r);
    if (r->pos == r->len)
        return truncated(r);
    tok t = {r->b + r->pos, 0};
    while (r->pos < r->len && !is_space(r->b[r->pos]))
        r->pos++, t.n++;
    if (mn_parse_double(t.s, t.n, v) != 0)
        return mn_fail(MN_EFORMAT, "line %zu: '%.*s' is not a number (element '%s' row %llu)",
                       r->line, SHOWN(t), r->e->name, (unsigned long long)r->row + 1);
    return MN_OK;
}

static mn_status next_value(body *r, ply_type t, double *v)
{
    if (!r->binary)
        return next_ascii(r, v);
    size_t size = type_size(t);
    if (r->len - r->pos < size)
        return truncated(r);
    *v = decode((const unsigned char *)r->b + r->pos, t);
    r->pos += size;
    return MN_OK;
}

static mn_status skip_list(body *r, const ply_prop *p)
{
    double c;
    mn_status s = next_value(r, p->count_type, &c);
    if (s != MN_OK)
        return s;
    if (!(c >= 0 && c <= (double)UINT32_MAX && c == floor(c)))
        return mn_fail(MN_EFORMAT, "element '%s' row %llu: list count %g is not a count",
                       r->e->name, (unsigned long long)r->row + 1, c);
    size_t n = (size_t)c, size = type_size(p->type);
    if (r->binary) {
        if (n > (r->len - r->pos) / size)
            return truncated(r);
        r->pos += n * size;
        return MN_OK;
    }
    for (size_t i = 0; i < n && s == MN_OK; i++)
        s = next_ascii(r, &c);
    return s;
}

static mn_status read_row(body *r, double *xyz)
{
    for (int i = 0; i < r->e->nprops; i++) {
        const ply_prop *p = &r->e->props[i];
        double v = 0;
        mn_status s = p->count_type != T_NONE ? skip_list(r, p) : next_value(r, p->type, &v);
        if (s != MN_OK)
            return s;
        if (p->axis < 0)
            continue;
        if (!isfinite(v))
            return mn_fail(MN_EFORMAT, "vertex %llu: coordinate %c is not finite (%g)",
                           (unsigned long long)r->row + 1, 'x' + p->axis, v);
        xyz[p->axis] = v;
    }
    return MN_OK;
}

/* The least an element row can take (bytes, or ascii characters: a digit and a separator per
 * value), so that a count the file cannot hold is refused before anything is allocated. */
static size_t min_row(const body *r)
{
    size_t n = 0;
    for (int i = 0; i < r->e->nprops; i++) {
        const ply_prop *p = &r->e->props[i];
        n += !r->binary ? 2 : type_size(p->count_type != T_NONE ? p->count_type : p->type);
    }
    return n;
}

static mn_status read_element(body *r, mn_cloud *cl, bool vertex)
{
    size_t least = min_row(r), room = r->len - r->pos + (r->binary ? 0 : 1);
    if (least == 0)
        return MN_OK; /* no properties: rows of nothing, no data to read or skip */
    r->row = 0;
    if (r->e->count > room / least)
        return mn_fail(
            MN_EFORMAT,
            "truncated: element '%s' declares %llu rows of at least %zu %s, the %zu left hold at most %zu",
            r->e->name, (unsigned long long)r->e->count, least, r->binary ? "bytes" : "characters",
            room, room / least);
    if (vertex && r->e->count > 0) {
        cl->xyz = malloc((size_t)r->e->count * 3 * sizeof *cl->xyz);
        if (!cl->xyz)
            return mn_fail(MN_ENOMEM, "cannot allocate %llu vertices",
                           (unsigned long long)r->e->count);
        cl->n = (size_t)r->e->count;
    }
    double scratch[3] = {0};
    for (; r->row < r->e->count; r->row++) {
        mn_status s = read_row(r, vertex ? cl->xyz + 3 * r->row : scratch);
        if (s != MN_OK)
            return s;
    }
    return MN_OK;
}

static mn_status read_body(const char *b, size_t len, const ply_header *h, mn_cloud *cl,
                           size_t header_lines)
{
    body r = {.b = b, .pos = h->body, .len = len, .line = header_lines, .binary = h->binary};
    for (int i = 0; i < h->nelems; i++) {
        r.e = &h->elems[i];
        mn_status s = read_element(&r, cl, i == h->vertex);
        if (s != MN_OK)
            return s;
    }
    if (!r.binary)
        skip_space(&r);
    if (r.pos != len)
        return mn_fail(MN_EFORMAT, "trailing data: %zu bytes after the last element", len - r.pos);
    return MN_OK;
}

/* ---- entry point ------------------------------------------------------------------------ */

static size_t count_lines(const char *b, size_t n)
{
    size_t lines = 1;
    for (size_t i = 0; i < n; i++)
        lines += b[i] == '\n';
    return lines;
}

mn_status mn_ply_parse(const void *buf, size_t len, mn_cloud *cl)
{
    if (!buf || !cl)
        return mn_fail(MN_EINVAL, "mn_ply_parse: NULL argument");
    cl->xyz = NULL;
    cl->n = 0;
    ply_header *h = calloc(1, sizeof *h);
    if (!h)
        return mn_fail(MN_ENOMEM, "cannot allocate a PLY header");
    mn_status s = parse_header(buf, len, h);
    if (s == MN_OK)
        s = read_body(buf, len, h, cl, count_lines(buf, h->body));
    free(h);
    if (s != MN_OK)
        mn_cloud_free(cl);
    return mn_done(s);
}
