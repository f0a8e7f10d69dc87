/* test_io.c: Minuet's file readers and writers and voxelization: .npy round trips and every
 * malformed header, shape and size; PLY ascii and binary (vertices among other properties,
 * elements and lists before and after them, every cut of a binary file, big-endian refused)
 * and the real assimp and CGAL clouds; XYZ text (comments, commas, extra columns, CRLF, bad
 * lines named); voxelize (merging, floor of negatives, order, bad arguments); error names and
 * per-thread messages.
 *
 * Sections: helpers, npy, ply, real files, xyz, voxelize, errors. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "minuet.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* A growable byte buffer for building file images. */
typedef struct bytes {
    unsigned char *b;
    size_t n, cap;
} bytes;

static void put(bytes *o, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2 + 64;
        o->b = realloc(o->b, o->cap);
        cr_assert_not_null(o->b);
    }
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void puts_(bytes *o, const char *s) { put(o, s, strlen(s)); }
static void put_f32(bytes *o, float v) { put(o, &v, 4); }
static void put_f64(bytes *o, double v) { put(o, &v, 8); }
static void put_i32(bytes *o, int32_t v) { put(o, &v, 4); }
static void put_u8(bytes *o, uint8_t v) { put(o, &v, 1); }
static void put_i16(bytes *o, int16_t v) { put(o, &v, 2); }

static void expect_fail(mn_status got, mn_status want, const char *needle)
{
    cr_assert_eq(got, want, "status %s, want %s (%s)", mn_status_name(got), mn_status_name(want),
                 mn_last_error());
    cr_assert(strstr(mn_last_error(), needle) != NULL, "message '%s' lacks '%s'", mn_last_error(),
              needle);
}

static char tmpdir[64];
static void make_tmpdir(void)
{
    strcpy(tmpdir, "/tmp/mn-io-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}
static void remove_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}
static char *tmp_path(const char *name)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}
static void write_file(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}
static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- npy ---------------------------------------------------------------------------------- */

/* A .npy image: magic, version, header length, dict padded to 64 with spaces and '\n', data. */
static bytes npy_image(int major, const char *dict, const void *data, size_t dn)
{
    bytes o = {0};
    size_t lsize = major == 1 ? 2 : 4, pre = 8 + lsize;
    size_t total = (pre + strlen(dict) + 1 + 63) / 64 * 64, hlen = total - pre;
    puts_(&o, "\x93NUMPY");
    put_u8(&o, (uint8_t)major);
    put_u8(&o, 0);
    for (size_t i = 0; i < lsize; i++)
        put_u8(&o, (uint8_t)(hlen >> (8 * i)));
    puts_(&o, dict);
    for (size_t i = strlen(dict); i + 1 < hlen; i++)
        put_u8(&o, ' ');
    put_u8(&o, '\n');
    if (dn)
        put(&o, data, dn);
    return o;
}

static const int32_t I6[6] = {0, 1, 2, -3, 2147483647, -2147483647 - 1};

static void expect_npy(const char *dict, mn_status want, const char *needle)
{
    bytes o = npy_image(1, dict, I6, sizeof I6);
    mn_array a;
    expect_fail(mn_npy_parse(o.b, o.n, &a), want, needle);
    cr_assert_null(a.data);
    free(o.b);
}

Test(npy, round_trip_int32_2d, .init = make_tmpdir, .fini = remove_tmpdir)
{
    int32_t v[12];
    for (int i = 0; i < 12; i++)
        v[i] = i * 1000003 - 6;
    mn_array a = {'i', 3, 4, v}, b;
    cr_assert_eq(mn_npy_write(tmp_path("a.npy"), &a), MN_OK, "%s", mn_last_error());
    cr_assert_eq(count_entries(tmpdir), 1, "the temporary file is left behind");
    cr_assert_eq(mn_npy_read(tmp_path("a.npy"), &b), MN_OK, "%s", mn_last_error());
    cr_assert_eq(b.dtype, 'i');
    cr_assert_eq(b.rows, 3);
    cr_assert_eq(b.cols, 4);
    cr_assert_arr_eq(b.data, v, sizeof v);
    free(b.data);
}

Test(npy, file_layout_is_numpys, .init = make_tmpdir, .fini = remove_tmpdir)
{
    float v[2] = {1.5f, -2.25f};
    mn_array a = {'f', 2, 1, v};
    cr_assert_eq(mn_npy_write(tmp_path("f.npy"), &a), MN_OK, "%s", mn_last_error());
    FILE *f = fopen(tmp_path("f.npy"), "rb");
    unsigned char buf[256];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    cr_assert_eq(n, 128 + sizeof v, "data must start at 128, a multiple of 64");
    cr_assert_arr_eq(buf, "\x93NUMPY\x01\x00\x76\x00", 10);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }";
    cr_assert_arr_eq(buf + 10, dict, strlen(dict));
    cr_assert_eq(buf[127], '\n');
    for (size_t i = 10 + strlen(dict); i < 127; i++)
        cr_assert_eq(buf[i], ' ');
    cr_assert_arr_eq(buf + 128, v, sizeof v);
}

Test(npy, round_trip_float32_1d_and_empty, .init = make_tmpdir, .fini = remove_tmpdir)
{
    float v[5] = {0.f, -1.f, 1e-30f, 3.5e30f, -0.f};
    bytes o =
        npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", v, sizeof v);
    mn_array a, b;
    cr_assert_eq(mn_npy_parse(o.b, o.n, &a), MN_OK, "%s", mn_last_error());
    cr_assert_eq(a.dtype, 'f');
    cr_assert_eq(a.rows, 5);
    cr_assert_eq(a.cols, 1);
    cr_assert_arr_eq(a.data, v, sizeof v);
    cr_assert_eq(mn_npy_write(tmp_path("v.npy"), &a), MN_OK, "%s", mn_last_error());
    cr_assert_eq(mn_npy_read(tmp_path("v.npy"), &b), MN_OK, "%s", mn_last_error());
    cr_assert_eq(b.rows, 5);
    cr_assert_eq(b.cols, 1);
    cr_assert_arr_eq(b.data, v, sizeof v);
    free(a.data);
    free(b.data);
    free(o.b);

    mn_array e = {'i', 0, 4, NULL};
    cr_assert_eq(mn_npy_write(tmp_path("e.npy"), &e), MN_OK, "%s", mn_last_error());
    cr_assert_eq(mn_npy_read(tmp_path("e.npy"), &b), MN_OK, "%s", mn_last_error());
    cr_assert_eq(b.dtype, 'i');
    cr_assert_eq(b.rows, 0);
    cr_assert_eq(b.cols, 4);
    free(b.data);
    o = npy_image(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (0,), }", NULL, 0);
    cr_assert_eq(mn_npy_parse(o.b, o.n, &a), MN_OK, "%s", mn_last_error());
    cr_assert_eq(a.rows, 0);
    free(a.data);
    free(o.b);
}

/* 3-D [A, B, C] is read as [A * B, C] (weights [K^3, Cin, Cout]); its size still checked. */
Test(npy, three_d_folds_the_first_two)
{
    bytes o = npy_image(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2, 3), }", I6,
                        sizeof I6);
    mn_array a;
    cr_assert_eq(mn_npy_parse(o.b, o.n, &a), MN_OK, "%s", mn_last_error());
    cr_assert(a.rows == 2 && a.cols == 3);
    cr_assert_arr_eq(a.data, I6, sizeof I6);
    free(a.data);
    free(o.b);
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (3, 2, 3), }", MN_EFORMAT,
               "truncated");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2), }",
               MN_EFORMAT, "too large");
}

Test(npy, header_variants)
{
    const char *ok[] = {
        "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }",
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<i4'}",
        "{ \"descr\" :'<i4','fortran_order':False,'shape':( 2 ,3 , ) }",
        "{'descr': '=i4', 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr': '<i4', 'fortran_order': False, 'shape': (6,), }",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        for (int major = 1; major <= 3; major++) {
            bytes o = npy_image(major, ok[i], I6, sizeof I6);
            mn_array a;
            cr_assert_eq(mn_npy_parse(o.b, o.n, &a), MN_OK, "%s: %s", ok[i], mn_last_error());
            cr_assert_eq(a.rows * a.cols, 6);
            cr_assert_eq(a.rows, i == 4 ? 6 : 2);
            cr_assert_arr_eq(a.data, I6, sizeof I6);
            free(a.data);
            free(o.b);
        }
    }
}

Test(npy, numpy_fixture_bytes)
{
    /* What numpy 1.26 writes for np.arange(6, dtype=np.int32).reshape(2, 3), byte for byte
     * (the header grows by spaces for in-place shape edits, then aligns to 64). */
    static const char img[] = "\x93NUMPY\x01\x00v\x00{'descr': '<i4', 'fortran_order': False, "
                              "'shape': (2, 3), }                                             "
                              "             \n"
                              "\0\0\0\0\1\0\0\0\2\0\0\0\3\0\0\0\4\0\0\0\5\0\0\0";
    cr_assert_eq(sizeof img - 1, 128 + 24);
    mn_array a;
    cr_assert_eq(mn_npy_parse(img, sizeof img - 1, &a), MN_OK, "%s", mn_last_error());
    cr_assert_eq(a.rows, 2);
    cr_assert_eq(a.cols, 3);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(((int32_t *)a.data)[i], i);
    free(a.data);
}

/* A Python with numpy: the one on PATH (a pyenv shim, say), else Debian's python3-numpy,
 * which scripts/setup installs. */
static const char *numpy_python(void)
{
    if (system("python3 -c 'import numpy' 2>/dev/null") == 0)
        return "python3";
    if (system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0)
        return "/usr/bin/python3";
    return NULL;
}

Test(npy, against_numpy, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *py = numpy_python();
    if (!py)
        cr_skip_test("no python3 with numpy here (scripts/setup installs python3-numpy)");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && %s -c \"import numpy as np; "
             "np.save('i.npy', np.arange(12, dtype=np.int32).reshape(3, 4) - 5); "
             "np.save('f.npy', np.linspace(-1, 1, 7, dtype=np.float32)); "
             "np.save('w.npy', np.arange(24, dtype=np.float32).reshape(2, 3, 4)); "
             "np.lib.format.write_array(open('v2.npy', 'wb'), np.ones((2, 2), np.float32), "
             "version=(2, 0))\"",
             tmpdir, py);
    cr_assert_eq(system(cmd), 0);
    mn_array a;
    cr_assert_eq(mn_npy_read(tmp_path("i.npy"), &a), MN_OK, "%s", mn_last_error());
    cr_assert(a.dtype == 'i' && a.rows == 3 && a.cols == 4);
    for (int i = 0; i < 12; i++)
        cr_assert_eq(((int32_t *)a.data)[i], i - 5);
    free(a.data);
    cr_assert_eq(mn_npy_read(tmp_path("f.npy"), &a), MN_OK, "%s", mn_last_error());
    cr_assert(a.dtype == 'f' && a.rows == 7 && a.cols == 1);
    cr_assert_float_eq(((float *)a.data)[6], 1.0f, 1e-6);
    cr_assert_eq(mn_npy_write(tmp_path("back.npy"), &a), MN_OK, "%s", mn_last_error());
    free(a.data);
    cr_assert_eq(mn_npy_read(tmp_path("v2.npy"), &a), MN_OK, "%s", mn_last_error());
    cr_assert(a.rows == 2 && a.cols == 2);
    free(a.data);
    cr_assert_eq(mn_npy_read(tmp_path("w.npy"), &a), MN_OK, "%s", mn_last_error());
    cr_assert(a.dtype == 'f' && a.rows == 6 && a.cols == 4, "3-D read as [A * B, C]");
    for (int i = 0; i < 24; i++)
        cr_assert_eq(((float *)a.data)[i], (float)i);
    free(a.data);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && %s -c \"import numpy as np; a = np.load('back.npy'); "
             "assert a.shape == (7, 1) and a.dtype == np.float32 and a[6, 0] == 1\"",
             tmpdir, py);
    cr_assert_eq(system(cmd), 0, "numpy cannot read what mn_npy_write wrote");
}

Test(npy, bad_preamble)
{
    bytes o =
        npy_image(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (6,), }", I6, sizeof I6);
    mn_array a;
    o.b[1] = 'n';
    expect_fail(mn_npy_parse(o.b, o.n, &a), MN_EFORMAT, "not a .npy file");
    o.b[1] = 'N';
    o.b[6] = 4;
    expect_fail(mn_npy_parse(o.b, o.n, &a), MN_EFORMAT, "version 4.0");
    o.b[6] = 1;
    o.b[7] = 1;
    expect_fail(mn_npy_parse(o.b, o.n, &a), MN_EFORMAT, "version 1.1");
    o.b[7] = 0;
    o.b[8] = 0xff;
    o.b[9] = 0x7f;
    expect_fail(mn_npy_parse(o.b, o.n, &a), MN_EFORMAT, "past the end");
    size_t hlen = o.n - 10 + 1; /* the header takes the data and one byte more */
    o.b[8] = (unsigned char)hlen;
    o.b[9] = (unsigned char)(hlen >> 8);
    expect_fail(mn_npy_parse(o.b, o.n, &a), MN_EFORMAT, "past the end");
    expect_fail(mn_npy_parse(o.b, 0, &a), MN_EFORMAT, "not a .npy file");
    free(o.b);
}

Test(npy, bad_dicts)
{
    expect_npy("{'descr': '<i4', 'shape': (6,), }", MN_EFORMAT, "missing key 'fortran_order'");
    expect_npy("{'fortran_order': False, 'shape': (6,), }", MN_EFORMAT, "missing key 'descr'");
    expect_npy("{'descr': '<i4', 'fortran_order': False}", MN_EFORMAT, "missing key 'shape'");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (6,), 'x': 1}", MN_EFORMAT,
               "unknown key 'x'");
    expect_npy("{'descr': '<i4', 'descr': '<i4', 'fortran_order': False, 'shape': (6,)}",
               MN_EFORMAT, "twice");
    expect_npy("'descr': '<i4', 'fortran_order': False, 'shape': (6,)", MN_EFORMAT, "'{'");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (6,)", MN_EFORMAT, "'}'");
    expect_npy("{'descr': '<i4' 'fortran_order': False, 'shape': (6,)}", MN_EFORMAT, "','");
    expect_npy("{'descr': '<i4', 'fortran_order': 0, 'shape': (6,)}", MN_EFORMAT, "True or");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (6)}", MN_EFORMAT, "tuple");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': [6]}", MN_EFORMAT, "tuple");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (-6,)}", MN_EFORMAT, "tuple");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (6,)} x", MN_EFORMAT,
               "after the dict");
    expect_npy("{'descr: '<i4', 'fortran_order': False, 'shape': (6,)}", MN_EFORMAT, "':'");
}

Test(npy, refused_dtypes_orders_and_shapes)
{
    expect_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", MN_EFORMAT,
               "dtype '<f8' is not supported (accepted: '<i4' (int32), '<f4' (float32))");
    expect_npy("{'descr': '|u1', 'fortran_order': False, 'shape': (24,), }", MN_EFORMAT,
               "dtype '|u1'");
    expect_npy("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", MN_EFORMAT,
               "dtype '<i8'");
    expect_npy("{'descr': '>i4', 'fortran_order': False, 'shape': (6,), }", MN_EFORMAT,
               "big-endian dtype '>i4'");
    expect_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (6,), }", MN_EFORMAT,
               "big-endian");
    expect_npy("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }", MN_EFORMAT,
               "fortran_order True");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 2, 3), }", MN_EFORMAT,
               "4-dimensional array is not supported (accepted: 1-D, 2-D, 3-D)");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (), }", MN_EFORMAT,
               "0-dimensional");
}

Test(npy, absurd_shapes)
{
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }",
               MN_EFORMAT, "too large");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (18446744073709551615,), }",
               MN_EFORMAT, "too large");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
               MN_EFORMAT, "too large");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (18446744073709551616,), }",
               MN_EFORMAT, "overflows");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (4611686018427387903,), }",
               MN_EFORMAT, "truncated");
    expect_npy("{'descr': '<i4', 'fortran_order': False, 'shape': (0, 18446744073709551615)}",
               MN_EFORMAT, "trailing data");
}

Test(npy, every_cut_and_trailing_data)
{
    bytes o =
        npy_image(2, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", I6, sizeof I6);
    mn_array a;
    for (size_t cut = 0; cut < o.n; cut++) {
        mn_status s = mn_npy_parse(o.b, cut, &a);
        cr_assert_eq(s, MN_EFORMAT, "cut at %zu of %zu accepted", cut, o.n);
        cr_assert_null(a.data);
    }
    expect_fail(mn_npy_parse(o.b, o.n - 5, &a), MN_EFORMAT, "truncated: 19 bytes of 24");
    put_u8(&o, 0);
    expect_fail(mn_npy_parse(o.b, o.n, &a), MN_EFORMAT, "trailing data: 1 bytes");
    free(o.b);
}

Test(npy, read_and_write_errors, .init = make_tmpdir, .fini = remove_tmpdir)
{
    mn_array a;
    expect_fail(mn_npy_read(tmp_path("none.npy"), &a), MN_EIO, "none.npy");
    int32_t v[2] = {1, 2};
    mn_array b = {'i', 1, 2, v};
    expect_fail(mn_npy_write(tmp_path("no/dir.npy"), &b), MN_EIO, "dir.npy");
    b.dtype = 'd';
    expect_fail(mn_npy_write(tmp_path("d.npy"), &b), MN_EINVAL, "dtype");
    b.dtype = 'i';
    b.data = NULL;
    expect_fail(mn_npy_write(tmp_path("d.npy"), &b), MN_EINVAL, "NULL data");
    b = (mn_array){'f', SIZE_MAX / 2, 3, v};
    expect_fail(mn_npy_write(tmp_path("d.npy"), &b), MN_EINVAL, "too large");
    cr_assert_eq(count_entries(tmpdir), 0);
    write_file(tmp_path("bad.npy"), "\x93NUMPY\x01\x00", 8);
    expect_fail(mn_npy_read(tmp_path("bad.npy"), &a), MN_EFORMAT, "bad.npy': truncated");
}

/* ---- ply ---------------------------------------------------------------------------------- */

static void expect_ply(const char *text, mn_status want, const char *needle)
{
    mn_cloud cl;
    expect_fail(mn_ply_parse(text, strlen(text), &cl), want, needle);
    cr_assert_null(cl.xyz);
    cr_assert_eq(cl.n, 0);
}

static void expect_points(const mn_cloud *cl, const double *want, size_t n)
{
    cr_assert_eq(cl->n, n);
    for (size_t i = 0; i < 3 * n; i++)
        cr_assert_eq(cl->xyz[i], want[i], "coordinate %zu: %g, want %g", i, cl->xyz[i], want[i]);
}

static const double P3[9] = {1, 2, 3, -4.5, 5.25, -6, 7e3, -8e-3, 0};

Test(ply, ascii_vertices_among_other_properties_and_elements)
{
    const char *text = "ply\n"
                       "format ascii 1.0\n"
                       "comment made by hand\n"
                       "obj_info nothing\n"
                       "element face 2\n"
                       "property list uchar int vertex_indices\n"
                       "element vertex 3\n"
                       "property float nx\n"
                       "property double z\n"
                       "property uchar red\n"
                       "property list uchar float extra\n"
                       "property float x\n"
                       "property int16 y\n"
                       "element edge 1\n"
                       "property int a\n"
                       "property int b\n"
                       "end_header\n"
                       "3 0 1 2\n"
                       "4 0 1 2 0\n"
                       "0.5 3 255 2 1.5 2.5 1 2\n"
                       "-1 -6 0 0 -4.5 5.25\n"
                       "1e9 0 7 1 9 7e3 -8e-3\n"
                       "0 1\n";
    mn_cloud cl;
    cr_assert_eq(mn_ply_parse(text, strlen(text), &cl), MN_OK, "%s", mn_last_error());
    /* y is int16 in the header: -8e-3 is read as written (ascii values are not cast). */
    expect_points(&cl, P3, 3);
    mn_cloud_free(&cl);
    cr_assert_null(cl.xyz);
}

Test(ply, ascii_crlf_and_untidy_header)
{
    const char *text = "ply\r\nformat ascii 1.0   \r\nelement vertex 3\r\n"
                       "property float32 x \r\nproperty float32 y\r\nproperty float32 z\r\n"
                       "\r\nend_header\r\n1 2 3\r\n-4.5 5.25 -6\r\n7e3\t-8e-3 0";
    mn_cloud cl;
    cr_assert_eq(mn_ply_parse(text, strlen(text), &cl), MN_OK, "%s", mn_last_error());
    expect_points(&cl, P3, 3);
    mn_cloud_free(&cl);
}

/* Binary: a face element before the vertices, a list inside the vertex element, x, y, z of
 * three types among others, an element of lists after. */
static bytes binary_ply(void)
{
    bytes o = {0};
    puts_(&o, "ply\nformat binary_little_endian 1.0\ncomment binary\n"
              "element face 2\nproperty list uchar int vertex_indices\n"
              "element vertex 3\nproperty uchar red\nproperty float x\n"
              "property list ushort short idx\nproperty double y\nproperty int z\n"
              "property float64 w\n"
              "element tail 2\nproperty list int uint8 bits\nproperty char c\n"
              "end_header\n");
    put_u8(&o, 3);
    for (int i = 0; i < 3; i++)
        put_i32(&o, i);
    put_u8(&o, 0);
    const double y[3] = {2, 5.25, -8e-3};
    const int32_t z[3] = {3, -6, 0};
    const float x[3] = {1, -4.5f, 7e3f};
    for (int i = 0; i < 3; i++) {
        put_u8(&o, 200);
        put_f32(&o, x[i]);
        uint16_t n = (uint16_t)i;
        put(&o, &n, 2);
        for (int k = 0; k < i; k++)
            put_i16(&o, -1);
        put_f64(&o, y[i]);
        put_i32(&o, z[i]);
        put_f64(&o, NAN); /* not a coordinate: not checked */
    }
    put_i32(&o, 2);
    put_u8(&o, 1);
    put_u8(&o, 2);
    put_u8(&o, 'c');
    put_i32(&o, 0);
    put_u8(&o, 'd');
    return o;
}

Test(ply, binary_with_lists_before_inside_and_after)
{
    bytes o = binary_ply();
    mn_cloud cl;
    cr_assert_eq(mn_ply_parse(o.b, o.n, &cl), MN_OK, "%s", mn_last_error());
    const double want[9] = {1, 2, 3, -4.5, 5.25, -6, 7e3, -8e-3, 0};
    expect_points(&cl, want, 3);
    mn_cloud_free(&cl);
    free(o.b);
}

Test(ply, binary_every_cut_and_trailing_byte)
{
    bytes o = binary_ply();
    for (size_t cut = 0; cut < o.n; cut++) {
        mn_cloud cl;
        mn_status s = mn_ply_parse(o.b, cut, &cl);
        cr_assert_eq(s, MN_EFORMAT, "cut at %zu of %zu accepted", cut, o.n);
        cr_assert_null(cl.xyz);
    }
    mn_cloud cl;
    expect_fail(mn_ply_parse(o.b, o.n - 1, &cl), MN_EFORMAT, "inside element 'tail' row 2 of 2");
    put_u8(&o, 0);
    expect_fail(mn_ply_parse(o.b, o.n, &cl), MN_EFORMAT, "trailing data: 1 bytes");
    free(o.b);
}

Test(ply, binary_non_finite_and_bad_list_counts)
{
    bytes o = {0};
    puts_(&o, "ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n"
              "property float y\nproperty float z\nend_header\n");
    put_f32(&o, 1);
    put_f32(&o, INFINITY);
    put_f32(&o, 1);
    mn_cloud cl;
    expect_fail(mn_ply_parse(o.b, o.n, &cl), MN_EFORMAT, "vertex 1: coordinate y is not finite");
    free(o.b);

    o = (bytes){0};
    puts_(&o, "ply\nformat binary_little_endian 1.0\nelement face 1\n"
              "property list char int idx\nelement vertex 0\nproperty float x\n"
              "property float y\nproperty float z\nend_header\n");
    put_u8(&o, 0xff); /* count -1 */
    expect_fail(mn_ply_parse(o.b, o.n, &cl), MN_EFORMAT, "list count -1");
    o.b[o.n - 1] = 0;
    cr_assert_eq(mn_ply_parse(o.b, o.n, &cl), MN_OK, "%s", mn_last_error());
    cr_assert_eq(cl.n, 0);
    free(o.b);
}

Test(ply, refused_headers)
{
    expect_ply("plyx\nformat ascii 1.0\nend_header\n", MN_EFORMAT, "not a PLY file");
    expect_ply("", MN_EFORMAT, "not a PLY file");
    expect_ply("ply\nformat binary_big_endian 1.0\nelement vertex 0\nend_header\n", MN_EFORMAT,
               "binary_big_endian PLY is not supported (accepted: ascii, binary_little_endian)");
    expect_ply("ply\nformat utf8 1.0\nend_header\n", MN_EFORMAT, "unknown format 'utf8'");
    expect_ply("ply\nformat ascii 2.0\nend_header\n", MN_EFORMAT, "version '2.0'");
    expect_ply("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", MN_EFORMAT,
               "no end_header");
    expect_ply("ply\nformat ascii 1.0\nCreated by hand\nend_header\n", MN_EFORMAT,
               "header line 3: unknown keyword 'Created'");
    expect_ply("ply\nformat ascii 1.0\nproperty float x\nend_header\n", MN_EFORMAT,
               "property before any element");
    expect_ply("ply\nformat ascii 1.0\nelement vertex -1\nend_header\n", MN_EFORMAT,
               "element count '-1'");
    expect_ply("ply\nformat ascii 1.0\nelement vertex 99999999999999999999\nend_header\n",
               MN_EFORMAT, "not a 64-bit count");
    expect_ply("ply\nformat ascii 1.0\nelement vertex 1\nproperty half x\nend_header\n", MN_EFORMAT,
               "bad property type");
    expect_ply("ply\nformat ascii 1.0\nelement f 1\nproperty list float int i\nend_header\n",
               MN_EFORMAT, "bad property type");
    expect_ply("ply\nformat ascii 1.0\nelement face 1\nend_header\n", MN_EFORMAT,
               "no vertex element");
    expect_ply("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float z\n"
               "end_header\n1 2\n",
               MN_EFORMAT, "no 'y' property");
    expect_ply("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float x\n"
               "end_header\n",
               MN_EFORMAT, "'x' is declared twice");
    expect_ply("ply\nformat ascii 1.0\nelement vertex 1\nproperty list uchar float x\n"
               "end_header\n",
               MN_EFORMAT, "'x' is a list");
    expect_ply("ply\nformat ascii 1.0\nelement vertex 1\nelement vertex 1\nend_header\n",
               MN_EFORMAT, "a second vertex element");
    expect_ply("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
               "property float z\nend_header junk\n",
               MN_EFORMAT, "text after end_header");
}

static const char *XYZ_HEADER = "ply\nformat ascii 1.0\nelement vertex %s\nproperty float x\n"
                                "property float y\nproperty float z\nend_header\n%s";

static void expect_ascii_body(const char *count, const char *body, mn_status want,
                              const char *needle)
{
    char text[512];
    snprintf(text, sizeof text, XYZ_HEADER, count, body);
    expect_ply(text, want, needle);
}

Test(ply, refused_ascii_bodies)
{
    expect_ascii_body("2", "1 2 3\n4 5\n", MN_EFORMAT, "truncated");
    expect_ascii_body("2", "1 2 3\n", MN_EFORMAT, "element 'vertex' declares 2 rows");
    expect_ascii_body("2", "1 2 3\n          \n", MN_EFORMAT, "element 'vertex' row 2 of 2");
    expect_ascii_body("1000000000000", "1 2 3\n", MN_EFORMAT, "truncated");
    expect_ascii_body("18446744073709551615", "1 2 3\n", MN_EFORMAT, "truncated");
    expect_ascii_body("1", "1 2 3\n4\n", MN_EFORMAT, "trailing data");
    expect_ascii_body("2", "1 2 3\n1 nan 3\n", MN_EFORMAT, "vertex 2: coordinate y");
    expect_ascii_body("2", "1 2 3\n1 2 1e999\n", MN_EFORMAT, "not finite");
    expect_ascii_body("2", "1 2 3\n\n1 2 z\n", MN_EFORMAT, "line 10: 'z' is not a number");
    mn_cloud cl;
    char text[512];
    snprintf(text, sizeof text, XYZ_HEADER, "0", "\n \n");
    cr_assert_eq(mn_ply_parse(text, strlen(text), &cl), MN_OK, "%s", mn_last_error());
    cr_assert_eq(cl.n, 0);
}

Test(ply, ascii_cuts_that_drop_values)
{
    char text[512];
    snprintf(text, sizeof text, XYZ_HEADER, "3", "1 2 3\n-4.5 5.25 -6\n7e3 -8e-3 0\n");
    size_t body = strstr(text, "end_header\n") - text + 11;
    for (size_t cut = 0; cut < strlen(text); cut++) {
        /* Cutting a number short leaves a shorter number; cutting a whole one must fail. */
        if (cut > body && text[cut - 1] != ' ' && text[cut - 1] != '\n')
            continue;
        mn_cloud cl;
        cr_assert_eq(mn_ply_parse(text, cut, &cl), MN_EFORMAT, "cut at %zu accepted", cut);
    }
}

/* ---- real files ----------------------------------------------------------------------------- */

#define ASSIMP_PLY "/usr/share/assimp/models/PLY/"
#define CGAL_TAR   "/usr/share/doc/libcgal-dev/data.tar.gz"

static void need_file(const char *path, const char *package)
{
    if (access(path, R_OK) != 0)
        cr_skip_test("%s is missing (package %s not installed)", path, package);
}

static void bbox(const mn_cloud *cl, double lo[3], double hi[3])
{
    for (int d = 0; d < 3; d++)
        lo[d] = INFINITY, hi[d] = -INFINITY;
    for (size_t i = 0; i < cl->n; i++)
        for (int d = 0; d < 3; d++) {
            double v = cl->xyz[3 * i + (size_t)d];
            cr_assert(isfinite(v));
            lo[d] = fmin(lo[d], v);
            hi[d] = fmax(hi[d], v);
        }
}

Test(real, assimp_cubes)
{
    need_file(ASSIMP_PLY "cube_binary.ply", "assimp-testmodels");
    const char *names[] = {ASSIMP_PLY "cube_binary.ply", ASSIMP_PLY "cube.ply"};
    for (int f = 0; f < 2; f++) {
        mn_cloud cl;
        cr_assert_eq(mn_cloud_read(names[f], &cl), MN_OK, "%s", mn_last_error());
        cr_assert_eq(cl.n, 8);
        double lo[3], hi[3];
        bbox(&cl, lo, hi);
        for (int d = 0; d < 3; d++)
            cr_assert(hi[d] - lo[d] > 0.5 && hi[d] - lo[d] < 10, "%s axis %d: %g..%g", names[f], d,
                      lo[d], hi[d]);
        mn_cloud_free(&cl);
    }
    /* A Blender 2.47 file with a header line that is not a comment: refused, named. */
    mn_cloud cl;
    expect_fail(mn_cloud_read(ASSIMP_PLY "Wuson.ply", &cl), MN_EFORMAT,
                "header line 3: unknown keyword 'Created'");
}

/* pond.0.ply (binary, 70 051 vertices of 31 bytes) is damaged in the Debian package: its data
 * is 69 bytes short, and holds no "\r\n" but 7402 "\n": an end-of-line conversion dropped the
 * 0x0d byte before 69 of them. From vertex 627 on, the values are shifted garbage. The reader
 * must refuse the file; the 626 vertices before the first lost byte are checked instead. */
Test(real, assimp_pond_is_damaged_and_refused)
{
    need_file(ASSIMP_PLY "pond.0.ply", "assimp-testmodels");
    mn_cloud cl;
    expect_fail(mn_cloud_read(ASSIMP_PLY "pond.0.ply", &cl), MN_EFORMAT,
                "element 'vertex' declares 70051 rows of at least 31 bytes, the 2171512 left "
                "hold at most 70048");
    /* The header with "626  " for "70051", then the first 626 vertices of the data. */
    const size_t keep = (size_t)626 * 31;
    FILE *f = fopen(ASSIMP_PLY "pond.0.ply", "rb");
    static char buf[32768];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    buf[sizeof buf - 1] = '\0';
    char *count = strstr(buf, "70051"), *end = strstr(buf, "end_header\n");
    cr_assert(count && end && (size_t)(end - buf) + 11 + keep <= n);
    end += 11;
    bytes o = {0};
    put(&o, buf, (size_t)(count - buf));
    puts_(&o, "626  ");
    put(&o, count + 5, (size_t)(end - count - 5));
    put(&o, end, keep);
    cr_assert_eq(mn_ply_parse(o.b, o.n, &cl), MN_OK, "%s", mn_last_error());
    cr_assert_eq(cl.n, 626);
    double lo[3], hi[3];
    bbox(&cl, lo, hi);
    cr_assert(lo[0] > -0.01 && hi[0] < 1.7 && lo[1] > 0.6 && hi[1] < 1.1 && lo[2] > -1.6 &&
                  hi[2] < 0,
              "box (%g %g %g)..(%g %g %g)", lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]);
    mn_cloud_free(&cl);
    free(o.b);
}

/* Extract data/points_3/<name> from CGAL's data tarball into tmpdir. */
static char *cgal_file(const char *name)
{
    need_file(CGAL_TAR, "libcgal-demo");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "tar -xzf %s -C '%s' --wildcards '*/points_3/%s'", CGAL_TAR, tmpdir,
             name);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    static char path[256];
    snprintf(path, sizeof path, "%s/data/points_3/%s", tmpdir, name);
    return path;
}

Test(real, cgal_b9_training_binary, .init = make_tmpdir, .fini = remove_tmpdir)
{
    char *path = cgal_file("b9_training.ply");
    mn_cloud cl;
    cr_assert_eq(mn_cloud_read(path, &cl), MN_OK, "%s", mn_last_error());
    cr_assert_eq(cl.n, 22300);
    double lo[3], hi[3];
    bbox(&cl, lo, hi);
    for (int d = 0; d < 3; d++)
        cr_assert(hi[d] - lo[d] > 1 && hi[d] - lo[d] < 1000, "axis %d: %g..%g", d, lo[d], hi[d]);
    mn_coords co;
    cr_assert_eq(mn_voxelize(&cl, 0.5, 0, &co), MN_OK, "%s", mn_last_error());
    cr_assert(co.n > 1000 && co.n <= cl.n);
    free(co.c);
    mn_cloud_free(&cl);
}

Test(real, cgal_building_ascii_and_kitten_xyz, .init = make_tmpdir, .fini = remove_tmpdir)
{
    mn_cloud cl;
    cr_assert_eq(mn_cloud_read(cgal_file("building.ply"), &cl), MN_OK, "%s", mn_last_error());
    cr_assert_eq(cl.n, 100000);
    double lo[3], hi[3];
    bbox(&cl, lo, hi);
    for (int d = 0; d < 3; d++)
        cr_assert(hi[d] > lo[d]);
    mn_cloud_free(&cl);
    cr_assert_eq(mn_cloud_read(cgal_file("kitten.xyz"), &cl), MN_OK, "%s", mn_last_error());
    cr_assert_gt(cl.n, 1000);
    cr_assert_float_eq(cl.xyz[0], -0.0721898, 1e-12);
    cr_assert_float_eq(cl.xyz[2], -0.108444, 1e-12);
    cr_assert_float_eq(cl.xyz[3], 0.145233, 1e-12);
    mn_cloud_free(&cl);
}

/* ---- xyz ---------------------------------------------------------------------------------- */

Test(xyz, comments_commas_extra_columns_crlf)
{
    const char *text = "# header comment\r\n"
                       "1 2 3 0.1 0.2 0.3 label\r\n"
                       "\r\n"
                       "  -4.5,5.25,\t-6 # inline comment\r\n"
                       "\t# indented comment\n"
                       "7e3, -8e-3, 0";
    mn_cloud cl;
    cr_assert_eq(mn_xyz_parse(text, strlen(text), &cl), MN_OK, "%s", mn_last_error());
    expect_points(&cl, P3, 3);
    mn_cloud_free(&cl);
    cr_assert_eq(mn_xyz_parse("", 0, &cl), MN_OK);
    cr_assert_eq(cl.n, 0);
}

Test(xyz, bad_lines_are_named)
{
    mn_cloud cl;
    const char *t1 = "1 2 3\n# c\n4 5\n";
    expect_fail(mn_xyz_parse(t1, strlen(t1), &cl), MN_EFORMAT, "line 3: 2 numbers, need x y z");
    cr_assert_null(cl.xyz);
    const char *t2 = "1 2 3\n1 2 nan\n";
    expect_fail(mn_xyz_parse(t2, strlen(t2), &cl), MN_EFORMAT,
                "line 2: 'nan' is not a finite number");
    const char *t3 = "1 2 3\r\n\r\n1 2x 3\r\n";
    expect_fail(mn_xyz_parse(t3, strlen(t3), &cl), MN_EFORMAT, "line 3: '2x' is not a number");
    const char *t4 = "1 2 inf\n";
    expect_fail(mn_xyz_parse(t4, strlen(t4), &cl), MN_EFORMAT, "line 1");
    const char *t5 = "1 2 3\n4 5 6\n7\n";
    expect_fail(mn_xyz_parse(t5, strlen(t5), &cl), MN_EFORMAT, "line 3: 1 number,");
    /* A NUL byte is not a separator. */
    expect_fail(mn_xyz_parse("1 2\0 3\n", 7, &cl), MN_EFORMAT, "line 1");
}

Test(xyz, cloud_read_dispatches_on_extension, .init = make_tmpdir, .fini = remove_tmpdir)
{
    const char *text = "1 2 3\n-4.5 5.25 -6\n7e3 -8e-3 0\n";
    const char *names[] = {"a.xyz", "b.TXT", "c.Pts", "d.XyZ"};
    mn_cloud cl;
    for (int i = 0; i < 4; i++) {
        write_file(tmp_path(names[i]), text, strlen(text));
        cr_assert_eq(mn_cloud_read(tmp_path(names[i]), &cl), MN_OK, "%s", mn_last_error());
        expect_points(&cl, P3, 3);
        mn_cloud_free(&cl);
    }
    write_file(tmp_path("e.csv"), text, strlen(text));
    expect_fail(mn_cloud_read(tmp_path("e.csv"), &cl), MN_EINVAL,
                "unknown point cloud extension '.csv'");
    expect_fail(mn_cloud_read(tmp_path("noext"), &cl), MN_EINVAL, "extension ''");
    expect_fail(mn_cloud_read(tmp_path("gone.ply"), &cl), MN_EIO, "gone.ply");
    write_file(tmp_path("f.PLY"), text, strlen(text));
    expect_fail(mn_cloud_read(tmp_path("f.PLY"), &cl), MN_EFORMAT, "f.PLY': not a PLY file");
    write_file(tmp_path("g.xyz"), "1 2\n", 4);
    expect_fail(mn_cloud_read(tmp_path("g.xyz"), &cl), MN_EFORMAT, "g.xyz': line 1");
}

/* ---- voxelize ----------------------------------------------------------------------------- */

Test(voxelize, floors_merges_and_sorts)
{
    double xyz[] = {
        0.5,   0.5,  0.5,  /* (0, 0, 0) */
        -0.5,  0.2,  0.0,  /* (-1, 0, 0): floor, not truncation */
        0.9,   0.1,  0.99, /* (0, 0, 0) again: merged */
        -1.0,  -1.0, -1.0, /* (-1, -1, -1) exactly on a boundary */
        3.0,   -0.0, 2.5,  /* (3, 0, 2) */
        -1e-9, 5,    5,    /* (-1, 5, 5) */
    };
    mn_cloud cl = {xyz, 6};
    mn_coords co;
    cr_assert_eq(mn_voxelize(&cl, 1.0, 7, &co), MN_OK, "%s", mn_last_error());
    const int32_t want[] = {7, -1, -1, -1, 7, -1, 0, 0, 7, -1, 5, 5, 7, 0, 0, 0, 7, 3, 0, 2};
    cr_assert_eq(co.n, 5);
    cr_assert_arr_eq(co.c, want, sizeof want);
    free(co.c);
    cr_assert_eq(mn_voxelize(&cl, 2.0, -1, &co), MN_OK, "%s", mn_last_error());
    const int32_t want2[] = {-1, -1, -1, -1, -1, -1, 0, 0, -1, -1, 2, 2, -1, 0, 0, 0, -1, 1, 0, 1};
    cr_assert_eq(co.n, 5);
    cr_assert_arr_eq(co.c, want2, sizeof want2);
    free(co.c);
}

Test(voxelize, many_points_sorted_unique)
{
    size_t n = 20000;
    double *xyz = malloc(n * 3 * sizeof *xyz);
    uint64_t s = 12345;
    for (size_t i = 0; i < 3 * n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        xyz[i] = (double)(s >> 40) / (double)(1 << 24) * 20.0 - 10.0;
    }
    mn_cloud cl = {xyz, n};
    mn_coords co;
    cr_assert_eq(mn_voxelize(&cl, 0.75, 0, &co), MN_OK, "%s", mn_last_error());
    cr_assert(co.n > 1000 && co.n < n);
    for (size_t i = 1; i < co.n; i++) {
        const int32_t *a = co.c + 4 * (i - 1), *b = co.c + 4 * i;
        int c = 0;
        for (int d = 0; d < 4 && c == 0; d++)
            c = (a[d] > b[d]) - (a[d] < b[d]);
        cr_assert_lt(c, 0, "rows %zu and %zu out of order or equal", i - 1, i);
    }
    /* Every point's voxel is present. */
    for (size_t i = 0; i < n; i += 97) {
        int32_t v[4] = {0};
        for (int d = 0; d < 3; d++)
            v[d + 1] = (int32_t)floor(xyz[3 * i + (size_t)d] / 0.75);
        bool found = false;
        for (size_t j = 0; j < co.n && !found; j++)
            found = memcmp(co.c + 4 * j, v, sizeof v) == 0;
        cr_assert(found, "point %zu has no voxel", i);
    }
    free(co.c);
    free(xyz);
}

Test(voxelize, bad_arguments_and_ranges)
{
    double xyz[] = {1, 2, 3};
    mn_cloud cl = {xyz, 1}, empty = {NULL, 0};
    mn_coords co;
    expect_fail(mn_voxelize(&empty, 1.0, 0, &co), MN_EEMPTY, "no points");
    cr_assert_null(co.c);
    expect_fail(mn_voxelize(&cl, 0.0, 0, &co), MN_EINVAL, "voxel size 0");
    expect_fail(mn_voxelize(&cl, -1.0, 0, &co), MN_EINVAL, "voxel size");
    expect_fail(mn_voxelize(&cl, NAN, 0, &co), MN_EINVAL, "voxel size");
    expect_fail(mn_voxelize(&cl, INFINITY, 0, &co), MN_EINVAL, "voxel size");
    expect_fail(mn_voxelize(NULL, 1.0, 0, &co), MN_EINVAL, "NULL");
    expect_fail(mn_voxelize(&cl, 1e-300, 0, &co), MN_ERANGE, "outside the int32 range");
    double big[] = {0, 2147483648.0, 0};
    mn_cloud bc = {big, 1};
    expect_fail(mn_voxelize(&bc, 1.0, 0, &co), MN_ERANGE, "point 0");
    double edge[] = {2147483647.5, -2147483648.0, 0};
    mn_cloud ec = {edge, 1};
    cr_assert_eq(mn_voxelize(&ec, 1.0, 0, &co), MN_OK, "%s", mn_last_error());
    cr_assert_eq(co.c[1], INT32_MAX);
    cr_assert_eq(co.c[2], INT32_MIN);
    free(co.c);
    double nan3[] = {0, 0, 0, 1, NAN, 1};
    mn_cloud nc = {nan3, 2};
    expect_fail(mn_voxelize(&nc, 1.0, 0, &co), MN_ENAN, "point 1");
}

/* ---- errors ------------------------------------------------------------------------------- */

static void *other_thread(void *arg)
{
    (void)arg;
    mn_cloud cl = {NULL, 0};
    mn_coords co;
    mn_voxelize(&cl, 1.0, 0, &co);
    return strstr(mn_last_error(), "no points") ? (void *)1 : NULL;
}

Test(errors, names_and_per_thread_messages)
{
    cr_assert_str_eq(mn_status_name(MN_OK), "MN_OK");
    cr_assert_str_eq(mn_status_name(MN_EFORMAT), "MN_EFORMAT");
    cr_assert_str_eq(mn_status_name(MN_ERANGE), "MN_ERANGE");
    cr_assert_str_eq(mn_status_name((mn_status)99), "MN_UNKNOWN");
    mn_array a;
    expect_fail(mn_npy_parse("x", 1, &a), MN_EFORMAT, "not a .npy file");
    pthread_t t;
    void *ok;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, &ok);
    cr_assert_not_null(ok);
    cr_assert(strstr(mn_last_error(), "not a .npy file"), "another thread's error leaked");
}
