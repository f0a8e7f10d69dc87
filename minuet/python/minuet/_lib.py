"""ctypes bindings over libminuet.so (minuet/include/minuet.h).

The library is found in this order: $MINUET_LIB (a path to libminuet.so); libminuet.so beside
this package (an installed copy); the source tree's build/lib/libminuet.so (the package used
from a checkout); the dynamic loader's search path.
"""
import ctypes
import os

c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_float_p = ctypes.POINTER(ctypes.c_float)
c_size_t_p = ctypes.POINTER(ctypes.c_size_t)

STATUS = ["OK", "EINVAL", "EDUP", "ERANGE", "ENAN", "EEMPTY", "ENOMEM", "EIO", "EFORMAT", "ENODEV"]


class Coords(ctypes.Structure):
    _fields_ = [("c", c_int32_p), ("n", ctypes.c_size_t)]


class KMap(ctypes.Structure):
    _fields_ = [("K", ctypes.c_int), ("nk", ctypes.c_int), ("count", c_size_t_p),
                ("inp", ctypes.POINTER(c_int32_p)), ("out", ctypes.POINTER(c_int32_p)),
                ("total", ctypes.c_size_t), ("n_in", ctypes.c_size_t),
                ("n_out", ctypes.c_size_t)]


class ConvTimes(ctypes.Structure):
    _fields_ = [("gather", ctypes.c_double), ("gemm", ctypes.c_double),
                ("scatter", ctypes.c_double), ("tune", ctypes.c_double)]


class Workspace(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("size", ctypes.c_size_t)]


class ConvOpts(ctypes.Structure):
    _fields_ = [("group_threshold", ctypes.c_double), ("threads", ctypes.c_int),
                ("transposed", ctypes.c_bool), ("times", ctypes.POINTER(ConvTimes)),
                ("ws", ctypes.POINTER(Workspace)), ("batch_rows", ctypes.c_size_t),
                ("tile_rows", ctypes.c_size_t), ("tile_channels", ctypes.c_int),
                ("autotune", ctypes.c_bool), ("dataflow", ctypes.c_int),
                ("in_rows", c_int32_p), ("out_rows", c_int32_p)]


class CudaKMap(ctypes.Structure):
    _fields_ = [("K", ctypes.c_int), ("nk", ctypes.c_int), ("n_in", ctypes.c_size_t),
                ("n_out", ctypes.c_size_t), ("total", ctypes.c_size_t), ("start", c_size_t_p),
                ("inp", ctypes.c_void_p), ("out", ctypes.c_void_p)]


def _candidates():
    env = os.environ.get("MINUET_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, "libminuet.so"),
            os.path.normpath(os.path.join(here, "..", "..", "..", "build", "lib", "libminuet.so")),
            "libminuet.so"]


def _load():
    errors = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            errors.append(f"{path}: not found")
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError("minuet: cannot load libminuet.so (" + "; ".join(errors) +
                      "); build it with `make` or set MINUET_LIB to its path")


lib = _load()


def _proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


P = ctypes.POINTER
mn_last_error = _proto("mn_last_error", ctypes.c_char_p)
mn_sort_threads = _proto("mn_sort_threads", ctypes.c_int, P(Coords), P(ctypes.c_uint32), ctypes.c_int)
mn_conv_outputs = _proto("mn_conv_outputs", ctypes.c_int, P(Coords), ctypes.c_int, ctypes.c_int,
                         ctypes.c_int, ctypes.c_int, P(ctypes.c_int), ctypes.c_int, P(Coords))
mn_kmap_build = _proto("mn_kmap_build", ctypes.c_int, P(Coords), P(Coords), ctypes.c_int,
                       ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, P(KMap))
mn_kmap_free = _proto("mn_kmap_free", None, P(KMap))
mn_conv = _proto("mn_conv", ctypes.c_int, P(KMap), c_float_p, ctypes.c_size_t, ctypes.c_int,
                 c_float_p, c_float_p, ctypes.c_int, c_float_p, ctypes.c_size_t, P(ConvOpts))
mn_conv_backward = _proto("mn_conv_backward", ctypes.c_int, P(KMap), c_float_p, ctypes.c_size_t,
                          ctypes.c_int, c_float_p, ctypes.c_int, c_float_p, ctypes.c_size_t,
                          c_float_p, c_float_p, c_float_p, P(ConvOpts))
mn_config = _proto("mn_config", ctypes.c_int)
mn_device = _proto("mn_device", ctypes.c_char_p)
mn_workspace_free = _proto("mn_workspace_free", None, P(Workspace))
# the CUDA backend: device pointers and a cudaStream_t, as integers
V = ctypes.c_void_p
mn_cuda_init = _proto("mn_cuda_init", ctypes.c_int)
mn_cuda_device_name = _proto("mn_cuda_device_name", ctypes.c_char_p)
mn_cuda_sort = _proto("mn_cuda_sort", ctypes.c_int, V, ctypes.c_size_t, V, V)
mn_cuda_kmap_build = _proto("mn_cuda_kmap_build", ctypes.c_int, V, ctypes.c_size_t, V,
                            ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                            ctypes.c_int, V, P(CudaKMap))
mn_cuda_kmap_free = _proto("mn_cuda_kmap_free", None, P(CudaKMap))
mn_cuda_conv = _proto("mn_cuda_conv", ctypes.c_int, P(CudaKMap), V, ctypes.c_int, V, V,
                      ctypes.c_int, V, ctypes.c_bool, V)
mn_cuda_conv_backward = _proto("mn_cuda_conv_backward", ctypes.c_int, P(CudaKMap), V,
                               ctypes.c_int, V, ctypes.c_int, V, V, V, V, ctypes.c_bool, V)
libc = ctypes.CDLL(None)
libc.free.argtypes = [ctypes.c_void_p]
libc.free.restype = None
