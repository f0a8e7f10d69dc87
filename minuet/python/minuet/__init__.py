"""minuet: sparse 3-D convolution with sort-based kernel maps (bindings over libminuet).

Arrays are numpy arrays or CPU torch tensors, returned as the same kind:
  - coordinates [N, 4] (batch, x, y, z), int32 (used in place when C-contiguous) or int64
    (converted: a copy, checked to fit int32);
  - features [N, C] and weights [K^3, C_in, C_out] float32 (used in place when contiguous).
Errors from the library raise MinuetError (MinuetValueError, also a ValueError, for bad
input) carrying the library's message.

  sort(coords)                              sorted copy and the permutation
  conv_outputs(coords, K, stride, ...)      output sites of a strided convolution (spconv's
                                            grid convention)
  kernel_map(in_coords, out_coords, K, ...) a KernelMap (pairs per offset)
  conv(kmap, feats, weight, bias, n_out)    forward
  conv_backward(kmap, feats, weight, grad_out, ...)  input, weight and bias gradients
The spconv hook is minuet.spconv_hook (install(), or MINUET_HOOK=spconv with scripts/minuet-run).
"""
import ctypes
import threading

import numpy as np

from . import _lib
from ._lib import lib

__all__ = ["MinuetError", "MinuetValueError", "KernelMap", "sort", "conv_outputs", "kernel_map",
           "conv", "conv_backward", "device"]

_BAD_INPUT = {"EINVAL", "EDUP", "ERANGE", "ENAN", "EEMPTY", "EFORMAT"}


class MinuetError(RuntimeError):
    """A libminuet call failed: .status is the code's name (EINVAL, EDUP, ...)."""

    def __init__(self, status, message):
        super().__init__(f"{message} [{status}]")
        self.status = status
        self.message = message


class MinuetValueError(MinuetError, ValueError):
    """Bad input (shapes, duplicates, ranges, NaN, empty): also a ValueError."""


def _check(st):
    if st == 0:
        return
    name = _lib.STATUS[st] if 0 <= st < len(_lib.STATUS) else str(st)
    msg = (_lib.mn_last_error() or b"").decode("utf-8", "replace")
    raise (MinuetValueError if name in _BAD_INPUT else MinuetError)(name, msg)


def _torch():
    import torch  # only when torch tensors are passed
    return torch


def _is_torch(a):
    return type(a).__module__.startswith("torch")


def _numpy_view(a):
    """A numpy view of a CPU torch tensor or a numpy array (no copy)."""
    if _is_torch(a):
        if a.device.type != "cpu":
            raise MinuetValueError("EINVAL", f"a tensor on {a.device}: the CPU backend takes CPU tensors")
        if a.requires_grad:
            a = a.detach()
        return a.numpy()
    if not isinstance(a, np.ndarray):
        raise TypeError(f"expected a numpy array or a torch tensor, got {type(a).__name__}")
    return a


def _coords(a, what="coordinates"):
    """An int32 C-contiguous [N, 4] numpy array over a's data (a copy only for int64 or
    strided input) and its mn_coords."""
    v = _numpy_view(a)
    if v.ndim != 2 or v.shape[1] != 4:
        raise MinuetValueError("EINVAL", f"{what}: shape {tuple(v.shape)}, expected [N, 4] "
                               "(batch, x, y, z)")
    if v.dtype == np.int64:
        if v.size and (v.min() < -2**31 or v.max() >= 2**31):
            raise MinuetValueError("ERANGE", f"{what}: int64 values outside int32")
        v = v.astype(np.int32)
    elif v.dtype != np.int32:
        raise MinuetValueError("EINVAL", f"{what}: dtype {v.dtype}, expected int32 or int64")
    v = np.ascontiguousarray(v)
    c = _lib.Coords(v.ctypes.data_as(_lib.c_int32_p), v.shape[0])
    return v, c


def _floats(a, shape_last, what):
    v = _numpy_view(a)
    if v.dtype != np.float32:
        raise MinuetValueError("EINVAL", f"{what}: dtype {v.dtype}, expected float32")
    v = np.ascontiguousarray(v)
    if shape_last is not None and (v.ndim != 2 or v.shape[1] != shape_last):
        raise MinuetValueError("EINVAL", f"{what}: shape {tuple(v.shape)}, expected [N, {shape_last}]")
    return v


def _fp(v):
    return v.ctypes.data_as(_lib.c_float_p) if v is not None else None


def _like(template, arr):
    """arr (numpy) returned as template's kind: a torch tensor sharing memory, or itself."""
    if _is_torch(template):
        return _torch().from_numpy(arr)
    return arr


def device():
    """The backend MINUET_DEVICE picks for the hook: "cpu", or "cuda" where the CUDA backend
    can run (minuet.cuda); raises on a malformed value, and for cuda where it cannot run."""
    _check(_lib.mn_config())
    return _lib.mn_device().decode()


def sort(coords, threads=0):
    """Rows sorted by (batch, x, y, z): (sorted copy, perm) with sorted[i] = coords[perm[i]].
    Duplicates raise MinuetValueError naming the rows."""
    v, _ = _coords(coords)
    s = v.copy()
    perm = np.empty(s.shape[0], dtype=np.uint32)
    c = _lib.Coords(s.ctypes.data_as(_lib.c_int32_p), s.shape[0])
    _check(_lib.mn_sort_threads(ctypes.byref(c), perm.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
                                threads))
    perm = perm.astype(np.int64)
    return _like(coords, s), _like(coords, perm)


def _take_coords(c):
    """Copy a malloc'd mn_coords into numpy and free it."""
    n = c.n
    out = np.ctypeslib.as_array(c.c, shape=(n, 4)).copy() if n else np.empty((0, 4), np.int32)
    _lib.libc.free(ctypes.cast(c.c, ctypes.c_void_p))
    return out


def conv_outputs(coords, K, stride, padding, dilation, out_shape, threads=0):
    """Sorted unique output sites (output-grid units) of a convolution with spconv's grid
    convention: o such that o*stride - padding + k*dilation is an input site, 0 <= o < shape."""
    _, c = _coords(coords)
    shape = (ctypes.c_int * 3)(*[int(x) for x in out_shape])
    out = _lib.Coords()
    _check(_lib.mn_conv_outputs(ctypes.byref(c), int(K), int(stride), int(padding), int(dilation),
                                shape, threads, ctypes.byref(out)))
    return _like(coords, _take_coords(out))


class KernelMap:
    """The pairs (input row, output row) of every kernel offset, ordered by output row.
    Offset k = (i*K + j)*K + l; see minuet.h for the offset convention."""

    def __init__(self):
        self._m = _lib.KMap()
        self.n_in = self.n_out = 0

    @property
    def K(self):
        return self._m.K

    @property
    def offsets(self):
        return self._m.nk

    @property
    def total(self):
        return self._m.total

    def counts(self):
        return np.ctypeslib.as_array(self._m.count, shape=(self._m.nk,)).copy()

    def pairs(self, k):
        """(input rows, output rows) of offset k, int32 copies."""
        n = self._m.count[k]
        if n == 0:
            return np.empty(0, np.int32), np.empty(0, np.int32)
        return (np.ctypeslib.as_array(self._m.inp[k], shape=(n,)).copy(),
                np.ctypeslib.as_array(self._m.out[k], shape=(n,)).copy())

    def __del__(self):
        if getattr(self, "_m", None) is not None and self._m.count:
            _lib.mn_kmap_free(ctypes.byref(self._m))
            self._m = None


def kernel_map(in_coords, out_coords, K, tensor_stride=1, dilation=1, method="sort", threads=0):
    """Pairs between sorted inputs and sorted outputs (both as from sort()) for every offset of
    spacing tensor_stride*dilation. method: "sort" (Minuet's) or "hash" (the baseline)."""
    if method not in ("sort", "hash"):
        raise MinuetValueError("EINVAL", f"method {method!r}: accepted 'sort' or 'hash'")
    vi, ci = _coords(in_coords, "input coordinates")
    vo, co = _coords(out_coords, "output coordinates")
    m = KernelMap()
    _check(_lib.mn_kmap_build(ctypes.byref(ci), ctypes.byref(co), int(K), int(tensor_stride),
                              int(dilation), 0 if method == "sort" else 1, threads,
                              ctypes.byref(m._m)))
    m.n_in, m.n_out = vi.shape[0], vo.shape[0]
    return m


class _Workspace(threading.local):
    """Each thread's mn_workspace: the gathered rows and GEMM results of one convolution,
    kept for the next instead of allocated and faulted in again for every call."""

    def __init__(self):
        self.ws = _lib.Workspace()

    def __del__(self):
        if _lib is not None and self.ws.buf:
            _lib.mn_workspace_free(ctypes.byref(self.ws))


_workspace = _Workspace()


def _rows(a, n, what):
    """An int32 C-contiguous numpy view of a row order (None stays None); its length is
    checked here, its being a permutation by the library."""
    if a is None:
        return None
    v = _numpy_view(a)
    if v.ndim != 1 or v.shape[0] != n:
        raise MinuetValueError("EINVAL", f"{what}: shape {tuple(v.shape)}, expected [{n}]")
    if v.dtype == np.int64:
        v = v.astype(np.int32)
    elif v.dtype != np.int32:
        raise MinuetValueError("EINVAL", f"{what}: dtype {v.dtype}, expected int32 or int64")
    return np.ascontiguousarray(v)


def _opts(transposed, threads, autotune, in_rows=None, out_rows=None):
    o = _lib.ConvOpts(group_threshold=0.25, threads=threads, transposed=bool(transposed),
                      autotune=bool(autotune), ws=ctypes.pointer(_workspace.ws))
    if in_rows is not None:
        o.in_rows = in_rows.ctypes.data_as(_lib.c_int32_p)
    if out_rows is not None:
        o.out_rows = out_rows.ctypes.data_as(_lib.c_int32_p)
    return o


def _weights(w, kmap, c_in, what="weight"):
    v = _numpy_view(w)
    if v.dtype != np.float32:
        raise MinuetValueError("EINVAL", f"{what}: dtype {v.dtype}, expected float32")
    if v.ndim != 3 or v.shape[0] != kmap.offsets or v.shape[1] != c_in:
        raise MinuetValueError("EINVAL", f"{what}: shape {tuple(v.shape)}, expected "
                               f"[{kmap.offsets}, {c_in}, C_out]")
    return np.ascontiguousarray(v)


def conv(kmap, feats, weight, bias=None, n_out=None, transposed=False, threads=0, autotune=True,
         in_rows=None, out_rows=None):
    """out[o] = bias + sum over pairs (i, o) of offset k: feats[i] @ weight[k] (with transposed,
    the pairs used as (o, i)). feats [n_in, C_in], weight [K^3, C_in, C_out].
    in_rows / out_rows (int32 or int64, a permutation; None: the map's order): the map's input
    row r is row in_rows[r] of the input-side array (feats, or the output when transposed),
    its output row r row out_rows[r] of the other: features in an unsorted order need no
    copy into the map's."""
    f = _floats(feats, None, "features")
    if f.ndim != 2:
        raise MinuetValueError("EINVAL", f"features: shape {tuple(f.shape)}, expected [N, C]")
    w = _weights(weight, kmap, f.shape[1])
    c_out = w.shape[2]
    b = None if bias is None else _floats(bias, None, "bias").reshape(-1)
    if b is not None and b.shape[0] != c_out:
        raise MinuetValueError("EINVAL", f"bias: {b.shape[0]} values for {c_out} channels")
    if n_out is None:
        n_out = kmap.n_in if transposed else kmap.n_out
    out = np.empty((n_out, c_out), np.float32)
    n_a, n_b = (n_out, f.shape[0]) if transposed else (f.shape[0], n_out)
    ri, ro = _rows(in_rows, n_a, "in_rows"), _rows(out_rows, n_b, "out_rows")
    o = _opts(transposed, threads, autotune, ri, ro)
    _check(_lib.mn_conv(ctypes.byref(kmap._m), _fp(f), f.shape[0], f.shape[1], _fp(w), _fp(b),
                        c_out, _fp(out), n_out, ctypes.byref(o)))
    return _like(feats, out)


def conv_backward(kmap, feats, weight, grad_out, transposed=False, need_input=True,
                  need_weight=True, need_bias=False, threads=0, autotune=True, in_rows=None,
                  out_rows=None):
    """(d_feats, d_weight, d_bias) of conv() for grad_out = dL/d(out); each None when not
    needed. The same maps, row orders, grouping, autotuning and determinism as the forward."""
    f = _floats(feats, None, "features")
    w = _weights(weight, kmap, f.shape[1])
    c_out = w.shape[2]
    g = _floats(grad_out, c_out, "output gradient")
    di = np.empty_like(f) if need_input else None
    dw = np.empty_like(w) if need_weight else None
    db = np.empty(c_out, np.float32) if need_bias else None
    n_a, n_b = (g.shape[0], f.shape[0]) if transposed else (f.shape[0], g.shape[0])
    ri, ro = _rows(in_rows, n_a, "in_rows"), _rows(out_rows, n_b, "out_rows")
    o = _opts(transposed, threads, autotune, ri, ro)
    _check(_lib.mn_conv_backward(ctypes.byref(kmap._m), _fp(f), f.shape[0], f.shape[1], _fp(w),
                                 c_out, _fp(g), g.shape[0], _fp(di), _fp(dw), _fp(db),
                                 ctypes.byref(o)))
    wrap = (lambda a: None if a is None else _like(feats, a))
    return wrap(di), wrap(dw), wrap(db)
