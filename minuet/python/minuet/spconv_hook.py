"""The spconv hook: spconv's SubMConv3d, SparseConv3d and SparseInverseConv3d run through
libminuet, forward and backward, with spconv's semantics.

install() patches spconv.pytorch's convolution forward; MINUET_HOOK=spconv does it at start-up
(scripts/minuet-run sets it). What the hook does not support runs spconv's own code, with one
line on stderr per reason (once). MINUET_LOG=info prints, per layer, which path ran.

How a layer runs through Minuet:
  - the input's coordinates are sorted once (mn_sort; cached per indices tensor); the
    features stay in the input's order, libminuet reaching the map's sorted rows through the
    permutation (mn_conv_opts.in_rows / out_rows), so nothing is copied in Python; outputs
    of strided convolutions are produced sorted, so deeper layers need no permutation;
  - subm: a submanifold map of the sorted coordinates; strided: the output sites
    (mn_conv_outputs: spconv's grid convention, padding and dilation included) and a map
    between them, the outputs placed in input space (o*stride - padding, centred for odd K);
  - inverse: the map of the SparseConv3d with the same indice_key, used the other way, the
    outputs being that convolution's inputs in their original order;
  - weights [C_out, K, K, K, C_in] (spconv's KRSC layout) become [K^3, C_in, C_out];
  - autograd: forward mn_conv, backward mn_conv_backward (the same maps);
  - the maps live in the SparseConvTensor's indice_dict under the layer's indice_key, as
    spconv's do (a MinuetIndiceData; layers falling back to spconv can still reuse it: its
    indice_pairs are converted to spconv's format on first use).
libminuet's threads follow torch.get_num_threads().
"""
import os
import sys
import weakref

import numpy as np
import torch

import minuet

_LEVELS = {"error": 0, "warn": 1, "info": 2, "debug": 3}
_warned = set()
_installed = {}


def _log_level():
    v = os.environ.get("MINUET_LOG", "warn").lower()
    if v not in _LEVELS:
        raise ValueError(f"MINUET_LOG={v!r}: accepted error, warn, info, debug")
    return _LEVELS[v]


def _info(msg):
    if _log_level() >= 2:
        print(f"minuet: {msg}", file=sys.stderr, flush=True)


def _fallback(reason):
    if reason not in _warned and _log_level() >= 1:
        _warned.add(reason)
        print(f"minuet: warning: running spconv's own code: {reason}", file=sys.stderr,
              flush=True)


# -- the sorted order of an indices tensor, cached while the tensor is unchanged ------------

_sorted_cache = {}  # id(tensor) -> (weakref, version, result); entries die with the tensor


def _sorted(indices):
    """(sorted int32 coordinates, perm or None) of an indices tensor: sorted row r is row
    perm[r] of the tensor."""
    hit = _sorted_cache.get(id(indices))
    if hit is not None and hit[0]() is indices and hit[1] == indices._version:
        return hit[2]
    s, perm = minuet.sort(indices, threads=torch.get_num_threads())
    res = (s, None if torch.equal(perm, torch.arange(perm.shape[0])) else perm)
    key = id(indices)
    _sorted_cache[key] = (weakref.ref(indices, lambda _: _sorted_cache.pop(key, None)),
                          indices._version, res)
    return res


# -- the weights in Minuet's layout, cached while the parameter is unchanged ---------------

_weight_cache = {}  # id(parameter) -> (weakref, version, [K^3, C_in, C_out] tensor)


def _minuet_weight(weight):
    """spconv's [C_out, K, K, K, C_in] (KRSC) as Minuet's [K^3, C_in, C_out]: one transposing
    copy per parameter version (once for inference; once per optimizer step in training)."""
    hit = _weight_cache.get(id(weight))
    if hit is not None and hit[0]() is weight and hit[1] == weight._version:
        return hit[2]
    W = weight.detach().reshape(weight.shape[0], -1, weight.shape[-1]).permute(1, 2, 0).contiguous()
    key = id(weight)
    _weight_cache[key] = (weakref.ref(weight, lambda _: _weight_cache.pop(key, None)),
                          weight._version, W)
    return W


class _WeightFn(torch.autograd.Function):
    """Minuet's weight layout with autograd: the gradient goes back transposed to spconv's."""

    @staticmethod
    def forward(ctx, weight):
        ctx.shape = weight.shape
        return _minuet_weight(weight).detach()  # a fresh tensor object over the cached copy

    @staticmethod
    def backward(ctx, g):
        return g.permute(2, 0, 1).reshape(ctx.shape).contiguous() if g is not None else None


# -- the indice data ----------------------------------------------------------------------

def _make_indice_data_class():
    from spconv.pytorch.core import IndiceData

    class MinuetIndiceData(IndiceData):
        """spconv's IndiceData with Minuet's map. indice_pairs / indice_pair_num are built in
        spconv's format only if a layer running spconv's code reuses this key."""

        def __init__(self, out_indices, indices, kmap, in_perm, spatial_shape,
                     out_spatial_shape, is_subm, algo, ksize, stride, dilation, padding):
            self.out_indices = out_indices
            self.indices = indices
            self.kmap = kmap
            self.in_perm = in_perm  # sorted input row r is original row in_perm[r] (None: same)
            # in_perm as the int32 row order libminuet takes (None: the map's order)
            self.rows = None if in_perm is None else in_perm.numpy().astype(np.int32)
            self.spatial_shape = spatial_shape
            self.out_spatial_shape = out_spatial_shape
            self.is_subm = is_subm
            self.algo = algo
            self.ksize = ksize
            self.stride = stride
            self.dilation = dilation
            self.padding = padding
            self.voxel_num = None
            self._pairs = None

        def _spconv_pairs(self):
            if self._pairs is None:
                n = self.indices.shape[0]
                nk = self.kmap.offsets
                pairs = torch.full((2, nk, max(n, 1)), -1, dtype=torch.int32)
                num = torch.zeros(nk, dtype=torch.int32)
                perm = self.in_perm
                for k in range(nk):
                    pi, po = self.kmap.pairs(k)
                    pi = torch.from_numpy(pi).long()
                    po = torch.from_numpy(po).long()
                    if perm is not None:  # sorted rows -> original rows
                        pi = perm[pi]
                        if self.is_subm:
                            po = perm[po]
                    pairs[0, k, :len(pi)] = pi.int()
                    pairs[1, k, :len(po)] = po.int()
                    num[k] = len(pi)
                self._pairs = (pairs, num)
            return self._pairs

        @property
        def indice_pairs(self):
            return self._spconv_pairs()[0]

        @indice_pairs.setter
        def indice_pairs(self, v):
            raise AttributeError("MinuetIndiceData: indice_pairs is derived from the map")

        @property
        def indice_pair_num(self):
            return self._spconv_pairs()[1]

        @indice_pair_num.setter
        def indice_pair_num(self, v):
            raise AttributeError("MinuetIndiceData: indice_pair_num is derived from the map")

    return MinuetIndiceData


MinuetIndiceData = None


# -- autograd -------------------------------------------------------------------------------

class _ConvFn(torch.autograd.Function):
    """rows: (in_rows, out_rows), the arrays' row orders of the map's two sides (int32 numpy
    or None): features stay in the caller's order, nothing is permuted in Python."""

    @staticmethod
    def forward(ctx, feats, W, bias, kmap, transposed, n_out, rows):
        th = torch.get_num_threads()
        y = minuet.conv(kmap, feats.contiguous(), W, bias, n_out=n_out, transposed=transposed,
                        threads=th, in_rows=rows[0], out_rows=rows[1])
        ctx.save_for_backward(feats, W)
        ctx.kmap, ctx.transposed, ctx.has_bias, ctx.rows = kmap, transposed, bias is not None, rows
        return y

    @staticmethod
    def backward(ctx, gy):
        feats, W = ctx.saved_tensors
        need = ctx.needs_input_grad
        di, dw, db = minuet.conv_backward(
            ctx.kmap, feats.contiguous(), W, gy.contiguous(), transposed=ctx.transposed,
            need_input=need[0], need_weight=need[1], need_bias=ctx.has_bias and need[2],
            threads=torch.get_num_threads(), in_rows=ctx.rows[0], out_rows=ctx.rows[1])
        return di, dw, db, None, None, None, None


# -- the layer ------------------------------------------------------------------------------

def _scalar(v, what):
    v = list(v) if isinstance(v, (list, tuple)) else [v] * 3
    if len(set(v)) != 1:
        return None, f"per-axis {what} {tuple(v)}"
    return int(v[0]), None


def _unsupported(self, input, weight, add_input, act_type):
    from spconv.core import ConvAlgo
    from spconv.constants import ALL_WEIGHT_IS_KRSC
    from cumm import tensorview as tv
    f = input.features
    if f.device.type != "cpu":
        return (f"tensors on {f.device}: the hook does not route CUDA tensors to Minuet's "
                "CUDA backend yet")
    if f.dtype != torch.float32 or weight.dtype != torch.float32:
        return f"dtype {f.dtype}/{weight.dtype}: Minuet computes float32"
    if self.ndim != 3:
        return f"a {self.ndim}-D convolution: Minuet is 3-D"
    if input.is_quantized or add_input is not None or act_type != tv.gemm.Activation.None_:
        return "quantized, fused add or fused activation"
    if self.algo != ConvAlgo.Native or not ALL_WEIGHT_IS_KRSC:
        return f"algorithm {self.algo} / weight layout other than spconv 2's KRSC"
    if self.transposed and not self.inverse:
        return "SparseConvTranspose3d (only SubMConv3d, SparseConv3d, SparseInverseConv3d)"
    if any(int(x) != 0 for x in (self.output_padding if isinstance(self.output_padding, (list, tuple)) else [self.output_padding])):
        return "output padding"
    for what in ("kernel_size", "stride", "padding", "dilation"):
        _, why = _scalar(getattr(self, what), what.replace("_", " "))
        if why:
            return why
    K = _scalar(self.kernel_size, "")[0]
    if self.subm and K % 2 == 0:
        return "a submanifold convolution of even kernel size"
    if self.subm and _scalar(self.stride, "")[0] != 1:
        return "a submanifold convolution with stride"
    if K > 15:
        return f"kernel size {K}: Minuet takes 1 to 15"
    if self.indice_key is not None:
        d = input.find_indice_pair(self.indice_key)
        if d is not None and not isinstance(d, MinuetIndiceData):
            return f"indice_key {self.indice_key!r} was made by spconv's own code"
    return None


def _hooked_conv_forward(self, training, input, weight, bias, add_input=None,
                         channel_scale=None, output_scale=None, name=None,
                         sparse_unique_name="", act_type=None, act_alpha=0, act_beta=0):
    from cumm import tensorview as tv
    orig = _installed["conv_forward"]
    if act_type is None:
        act_type = tv.gemm.Activation.None_
    args = (self, training, input, weight, bias, add_input, channel_scale, output_scale, name,
            sparse_unique_name, act_type, act_alpha, act_beta)
    if self.conv1x1:  # a plain matmul in spconv too
        _info(f"{self._layer_name()}: 1x1 kernel, spconv's matmul")
        return orig(*args)
    why = _unsupported(self, input, weight, add_input, act_type)
    if why is not None:
        _fallback(why)
        _info(f"{self._layer_name()}: spconv ({why})")
        return orig(*args)
    return _minuet_forward(self, input, weight, bias)


def _layer_name(self):
    kind = "SubMConv3d" if self.subm else "SparseInverseConv3d" if self.inverse else "SparseConv3d"
    k = self.kernel_size
    k = k[0] if isinstance(k, (list, tuple)) and len(set(k)) == 1 else k
    return f"{kind}({self.in_channels}->{self.out_channels}, K={k})"


def _minuet_forward(self, input, weight, bias):
    from spconv.pytorch import ops
    if input.features.dim() != 2 or input.features.shape[1] != self.in_channels:
        raise ValueError(f"{self._layer_name()}: features of shape {tuple(input.features.shape)}"
                         f" for {self.in_channels} input channels")
    if input.indices.shape[0] == 0:
        raise ValueError(f"{self._layer_name()}: an empty SparseConvTensor (no voxels)")
    if input.indices.shape[0] != input.features.shape[0]:
        raise ValueError(f"{self._layer_name()}: {input.indices.shape[0]} coordinates for "
                         f"{input.features.shape[0]} feature rows")
    K = _scalar(self.kernel_size, "")[0]
    s = _scalar(self.stride, "")[0]
    p = _scalar(self.padding, "")[0]
    d = _scalar(self.dilation, "")[0]
    spatial_shape = input.spatial_shape
    indices = input.indices
    feats = input.features
    indice_dict = input.indice_dict.copy()
    datas = input.find_indice_pair(self.indice_key)
    reused = datas is not None
    # Minuet's weights: [K^3, C_in, C_out] from spconv's [C_out, K, K, K, C_in].
    W = _WeightFn.apply(weight) if weight.requires_grad and torch.is_grad_enabled() else \
        _minuet_weight(weight)
    if self.inverse:
        assert datas is not None and self.indice_key is not None
        assert datas.is_subm is False, "inverse conv can only be used with standard conv and pool ops."
        self._check_inverse_reuse_valid(input, spatial_shape, datas)
        # The convolution's outputs are our inputs (its sorted order); its inputs our outputs,
        # in their original order (the map's input rows through in_rows).
        n_out = datas.indices.shape[0]
        y = _ConvFn.apply(feats, W, bias, datas.kmap, True, n_out, (datas.rows, None))
        outids, out_spatial_shape = datas.indices, datas.spatial_shape
    else:
        if self.subm:
            out_spatial_shape = spatial_shape
        else:
            out_spatial_shape = ops.get_conv_output_size(spatial_shape, self.kernel_size,
                                                         self.stride, self.padding, self.dilation)
        if reused:
            assert self.subm, "only support reuse subm indices"
            self._check_subm_reuse_valid(input, spatial_shape, datas)
        else:
            datas = _build(self, indices, spatial_shape, out_spatial_shape, K, s, p, d)
            if self.indice_key is not None:
                msg = f"your indice key {self.indice_key} already exists in this sparse tensor."
                assert self.indice_key not in indice_dict, msg
                indice_dict[self.indice_key] = datas
        # Features stay in the input's order: the map's sorted rows reach them through
        # datas.rows (subm outputs too, in the input's order; strided outputs are sorted).
        n_out = datas.out_indices.shape[0]
        rows = (datas.rows, datas.rows if self.subm else None)
        y = _ConvFn.apply(feats, W, bias, datas.kmap, False, n_out, rows)
        outids = datas.out_indices
    _info(f"{self._layer_name()}: minuet, {feats.shape[0]} -> {y.shape[0]} voxels, map "
          f"{'reused' if reused else 'built'}")
    out = input.shadow_copy()
    out = out.replace_feature(y)
    out.indices = outids
    out.indice_dict = indice_dict
    out.spatial_shape = out_spatial_shape
    return out


def _build(self, indices, spatial_shape, out_spatial_shape, K, s, p, d):
    from spconv.core import ConvAlgo
    th = torch.get_num_threads()
    lo = indices.min(0).values.tolist()
    hi = indices.max(0).values.tolist()
    if lo[0] < 0 or any(lo[1:][x] < 0 or hi[1:][x] >= spatial_shape[x] for x in range(3)):
        raise ValueError(f"{self._layer_name()}: coordinates span {lo} .. {hi} (batch, then "
                         f"the axes), outside the spatial shape {list(spatial_shape)}")
    srt, perm = _sorted(indices)
    if self.subm:
        kmap = minuet.kernel_map(srt, srt, K, 1, d, threads=th)
        out_indices = indices
    else:
        outs = minuet.conv_outputs(srt, K, s, p, d, out_spatial_shape, threads=th)
        q = outs.clone()
        q[:, 1:] = outs[:, 1:] * s - p + (K // 2) * d * (K % 2)
        kmap = minuet.kernel_map(srt, q, K, 1, d, threads=th)
        out_indices = outs
    return MinuetIndiceData(out_indices, indices, kmap, perm, spatial_shape, out_spatial_shape,
                            self.subm, ConvAlgo.Native, self.kernel_size, self.stride,
                            self.dilation, self.padding)


def install():
    """Route spconv.pytorch's convolutions through Minuet (idempotent)."""
    global MinuetIndiceData
    if _installed:
        return
    _log_level()  # a malformed MINUET_LOG is an error now, not at the first layer
    minuet.device()  # likewise MINUET_DEVICE
    from spconv.pytorch import conv as spconv_conv
    from spconv.pytorch import ops
    MinuetIndiceData = _make_indice_data_class()
    base = spconv_conv.SparseConvolutionBase
    _installed["conv_forward"] = base._conv_forward
    base._conv_forward = _hooked_conv_forward
    base._layer_name = _layer_name
    if not torch.cuda.is_available():
        # spconv 2.3.8's CPU backward asks torch.cuda for a stream and fails without an
        # NVIDIA driver; its layers that fall back would then not train on the CPU.
        ops.get_current_stream = lambda: 0
    _info("spconv hook installed")


def uninstall():
    """Restore spconv's own convolution forward."""
    from spconv.pytorch import conv as spconv_conv
    if _installed:
        spconv_conv.SparseConvolutionBase._conv_forward = _installed.pop("conv_forward")
