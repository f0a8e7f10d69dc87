"""minuet.cuda: Minuet's CUDA backend on torch CUDA tensors, with no copies, on torch's
current stream (libminuet's mn_cuda_* calls; minuet.h, "the CUDA backend").

  available()                              (True, device name) or (False, the reason)
  sort(coords)                             sorted copy and the permutation (int64)
  kernel_map(in_coords, out_coords, K, tensor_stride=1, dilation=1, method="sort")
                                           a CudaKernelMap; method "sort" (Minuet's double-
                                           traversed binary search) or "hash" (the baseline)
  conv(kmap, feats, weight, bias=None, transposed=False)
  conv_backward(kmap, feats, weight, grad_out, transposed=False, need_input=True,
                need_weight=True, need_bias=False)
  SparseConvFunction                       the two as a torch.autograd.Function
Coordinates [N, 4] int32 (int64 is converted: a copy), features [N, C] and weights
[K^3, C_in, C_out] float32, contiguous, all on one CUDA device. The same conventions and the
same errors (MinuetError with the library's message) as the CPU functions of the package.
"""
import ctypes

from . import _lib
from . import _check, MinuetValueError

__all__ = ["available", "sort", "kernel_map", "CudaKernelMap", "conv", "conv_backward",
           "SparseConvFunction"]


def _torch():
    import torch
    return torch


def available():
    """(True, the device's name) where the CUDA backend can run, else (False, the reason)."""
    if _lib.mn_cuda_init() != 0:
        return False, (_lib.mn_last_error() or b"").decode()
    return True, _lib.mn_cuda_device_name().decode()


def _stream(t):
    return ctypes.c_void_p(_torch().cuda.current_stream(t.device).cuda_stream)


def _dev(t, what, dtype, ncols=None):
    torch = _torch()
    if not isinstance(t, torch.Tensor) or t.device.type != "cuda":
        raise MinuetValueError("EINVAL", f"{what}: expected a CUDA tensor")
    if t.dtype != dtype:
        raise MinuetValueError("EINVAL", f"{what}: dtype {t.dtype}, expected {dtype}")
    if ncols is not None and (t.dim() != 2 or t.shape[1] != ncols):
        raise MinuetValueError("EINVAL", f"{what}: shape {tuple(t.shape)}, expected [N, {ncols}]")
    return t.detach().contiguous()


def _coords(t, what="coordinates"):
    torch = _torch()
    if isinstance(t, torch.Tensor) and t.dtype == torch.int64:
        if t.numel() and (t.min() < -2**31 or t.max() >= 2**31):
            raise MinuetValueError("ERANGE", f"{what}: int64 values outside int32")
        t = t.to(torch.int32)
    return _dev(t, what, torch.int32, 4)


def _p(t):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def sort(coords):
    """(sorted copy, perm) with sorted[i] = coords[perm[i]]; duplicates raise."""
    torch = _torch()
    c = _coords(coords).clone()
    perm = torch.empty(c.shape[0], dtype=torch.int32, device=c.device)
    _check(_lib.mn_cuda_sort(_p(c), c.shape[0], _p(perm), _stream(c)))
    return c, perm.to(torch.int64)


class CudaKernelMap:
    """The pairs of every offset, on the device (freed with the object); counts() per offset
    on the host."""

    def __init__(self, device):
        self._m = _lib.CudaKMap()
        self.device = device

    @property
    def K(self):
        return self._m.K

    @property
    def offsets(self):
        return self._m.nk

    @property
    def n_in(self):
        return self._m.n_in

    @property
    def n_out(self):
        return self._m.n_out

    @property
    def total(self):
        return self._m.total

    def counts(self):
        s = [self._m.start[k] for k in range(self._m.nk + 1)]
        return [s[k + 1] - s[k] for k in range(self._m.nk)]

    def __del__(self):
        if getattr(self, "_m", None) is not None and _lib is not None:
            _lib.mn_cuda_kmap_free(ctypes.byref(self._m))
            self._m = None


def kernel_map(in_coords, out_coords, K, tensor_stride=1, dilation=1, method="sort"):
    """Pairs between sorted inputs and sorted outputs (both as from sort()), on the device."""
    if method not in ("sort", "hash"):
        raise MinuetValueError("EINVAL", f"method {method!r}: accepted 'sort' or 'hash'")
    ci = _coords(in_coords, "input coordinates")
    co = _coords(out_coords, "output coordinates")
    m = CudaKernelMap(ci.device)
    _check(_lib.mn_cuda_kmap_build(_p(ci), ci.shape[0], _p(co), co.shape[0], int(K),
                                   int(tensor_stride), int(dilation),
                                   0 if method == "sort" else 1, _stream(ci),
                                   ctypes.byref(m._m)))
    return m


def _weights(w, kmap, c_in):
    torch = _torch()
    w = _dev(w, "weight", torch.float32)
    if w.dim() != 3 or w.shape[0] != kmap.offsets or w.shape[1] != c_in:
        raise MinuetValueError("EINVAL", f"weight: shape {tuple(w.shape)}, expected "
                               f"[{kmap.offsets}, {c_in}, C_out]")
    return w


def conv(kmap, feats, weight, bias=None, transposed=False):
    """out = bias + sum over pairs of feats rows @ weight[k] (transposed: the map the other
    way). A new CUDA tensor [n_out (n_in when transposed), C_out]."""
    torch = _torch()
    f = _dev(feats, "features", torch.float32)
    n_src = kmap.n_out if transposed else kmap.n_in
    if f.dim() != 2 or f.shape[0] != n_src:
        raise MinuetValueError("EINVAL", f"features: shape {tuple(f.shape)}, expected [{n_src}, C]")
    w = _weights(weight, kmap, f.shape[1])
    b = None if bias is None else _dev(bias, "bias", torch.float32).reshape(-1)
    if b is not None and b.shape[0] != w.shape[2]:
        raise MinuetValueError("EINVAL", f"bias: {b.shape[0]} values for {w.shape[2]} channels")
    n_dst = kmap.n_in if transposed else kmap.n_out
    out = torch.empty(n_dst, w.shape[2], dtype=torch.float32, device=f.device)
    _check(_lib.mn_cuda_conv(ctypes.byref(kmap._m), _p(f), f.shape[1], _p(w), _p(b), w.shape[2],
                             _p(out), bool(transposed), _stream(f)))
    return out


def conv_backward(kmap, feats, weight, grad_out, transposed=False, need_input=True,
                  need_weight=True, need_bias=False):
    """(d_feats, d_weight, d_bias) of conv(); each None when not needed."""
    torch = _torch()
    f = _dev(feats, "features", torch.float32)
    w = _weights(weight, kmap, f.shape[1])
    g = _dev(grad_out, "output gradient", torch.float32, w.shape[2])
    di = torch.empty_like(f) if need_input else None
    dw = torch.empty_like(w) if need_weight else None
    db = torch.empty(w.shape[2], dtype=torch.float32, device=f.device) if need_bias else None
    _check(_lib.mn_cuda_conv_backward(ctypes.byref(kmap._m), _p(f), f.shape[1], _p(w),
                                      w.shape[2], _p(g), _p(di), _p(dw), _p(db),
                                      bool(transposed), _stream(f)))
    return di, dw, db


def _function():
    torch = _torch()

    class SparseConvFunction(torch.autograd.Function):
        """conv() with its backward for torch.autograd: apply(feats, weight, bias, kmap,
        transposed)."""

        @staticmethod
        def forward(ctx, feats, weight, bias, kmap, transposed=False):
            ctx.kmap, ctx.transposed = kmap, transposed
            ctx.has_bias = bias is not None
            ctx.save_for_backward(feats, weight)
            return conv(kmap, feats, weight, bias, transposed)

        @staticmethod
        def backward(ctx, grad):
            feats, weight = ctx.saved_tensors
            di, dw, db = conv_backward(ctx.kmap, feats, weight, grad.contiguous(),
                                       ctx.transposed, ctx.needs_input_grad[0],
                                       ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2])
            return di, dw, db, None, None

    return SparseConvFunction


def __getattr__(name):
    if name == "SparseConvFunction":
        f = _function()
        globals()["SparseConvFunction"] = f
        return f
    raise AttributeError(name)
