"""ctypes declarations of libdynapipe (dynapipe/include/dynapipe.h): the structures the
package reads, mirrored field for field, and the functions it calls."""
import ctypes
import os

DP_MAX_STAGES = 64
STATUS = ["OK", "EINVAL", "EEMPTY", "ERANGE", "ENOMEM", "EIO", "EFORMAT", "EGRID",
          "EINFEASIBLE", "ECHECK"]
OPCODES = ["LoadInput", "Forward", "Backward", "SendActivationStart", "SendActivationFinish",
           "RecvActivationStart", "RecvActivationFinish", "SendGradStart", "SendGradFinish",
           "RecvGradStart", "RecvGradFinish", "FreeBuffer"]
METHODS = {"dynapipe": 0, "padding": 1, "packing": 2, "token_budget": 3}


class Sample(ctypes.Structure):
    _fields_ = [("input_len", ctypes.c_int), ("target_len", ctypes.c_int)]


class Samples(ctypes.Structure):
    _fields_ = [("v", ctypes.POINTER(Sample)), ("n", ctypes.c_size_t),
                ("left_out", ctypes.c_size_t), ("left_out_tokens", ctypes.c_long)]


class Config(ctypes.Structure):
    _fields_ = [("stages", ctypes.c_int), ("dp_size", ctypes.c_int),
                ("layers_enc", ctypes.c_int), ("layers_dec", ctypes.c_int),
                ("hidden", ctypes.c_int), ("pad_multiple", ctypes.c_int),
                ("max_len", ctypes.c_int), ("max_target", ctypes.c_int),
                ("memory_mb", ctypes.c_double), ("param_factor", ctypes.c_double),
                ("p2p_gbps", ctypes.c_double), ("p2p_latency_ms", ctypes.c_double),
                ("tmax_tol", ctypes.c_double), ("rc_mask", ctypes.c_uint),
                ("rc_per_microbatch", ctypes.c_bool), ("sched_mask", ctypes.c_uint),
                ("pack_len", ctypes.c_int), ("pack_target_len", ctypes.c_int),
                ("token_budget", ctypes.c_long)]


class MbTimes(ctypes.Structure):
    _fields_ = [("fwd_ms", ctypes.c_double * DP_MAX_STAGES),
                ("bwd_ms", ctypes.c_double * DP_MAX_STAGES),
                ("stored_mb", ctypes.c_double * DP_MAX_STAGES),
                ("peak_mb", ctypes.c_double * DP_MAX_STAGES), ("comm_ms", ctypes.c_double)]


class Microbatch(ctypes.Structure):
    _fields_ = [("samples", ctypes.POINTER(ctypes.c_size_t)), ("n", ctypes.c_size_t),
                ("mbs", ctypes.c_int), ("rc", ctypes.c_int), ("padded_input", ctypes.c_int),
                ("padded_target", ctypes.c_int), ("cost_ms", ctypes.c_double),
                ("replica", ctypes.c_int), ("times", MbTimes)]


class Result(ctypes.Structure):
    _fields_ = [("mb", ctypes.POINTER(Microbatch)), ("n_mb", ctypes.c_size_t),
                ("rc", ctypes.c_int), ("rc_mixed", ctypes.c_bool), ("schedule", ctypes.c_int),
                ("t_max_ms", ctypes.c_double), ("objective_ms", ctypes.c_double),
                ("iteration_ms", ctypes.c_double), ("tokens_per_s", ctypes.c_double),
                ("real_tokens", ctypes.c_long), ("padded_tokens", ctypes.c_long),
                ("sched", ctypes.c_void_p),
                ("replica_mb", ctypes.POINTER(ctypes.POINTER(ctypes.c_size_t))),
                ("replica_n", ctypes.POINTER(ctypes.c_size_t)), ("replicas", ctypes.c_int),
                ("stages", ctypes.c_int), ("hidden", ctypes.c_int),
                ("state_mb", ctypes.c_double * DP_MAX_STAGES)]


class Instr(ctypes.Structure):
    _fields_ = [("op", ctypes.c_int), ("mb", ctypes.c_int32), ("peer", ctypes.c_int32),
                ("shape", ctypes.c_int32 * 4)]


class Stream(ctypes.Structure):
    _fields_ = [("rank", ctypes.c_int32), ("stages", ctypes.c_int32),
                ("v", ctypes.POINTER(Instr)), ("n", ctypes.c_size_t)]


def _load():
    here = os.path.dirname(os.path.abspath(__file__))
    tried = []
    for path in [os.environ.get("DYNAPIPE_LIB"), os.path.join(here, "libdynapipe.so"),
                 os.path.join(here, "..", "..", "..", "build", "lib", "libdynapipe.so"),
                 "libdynapipe.so"]:
        if not path:
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path}: {e}")
    raise ImportError("dynapipe: cannot load libdynapipe.so (" + "; ".join(tried) +
                      "); build it with make, or set DYNAPIPE_LIB")


lib = _load()
P = ctypes.POINTER


def _proto(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


dp_last_error = _proto("dp_last_error", ctypes.c_char_p)
dp_cost_model_load = _proto("dp_cost_model_load", ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                            ctypes.c_int, P(ctypes.c_void_p))
dp_cost_model_free = _proto("dp_cost_model_free", None, ctypes.c_void_p)
dp_cost_model_encdec = _proto("dp_cost_model_encdec", ctypes.c_bool, ctypes.c_void_p)
dp_cost_model_name = _proto("dp_cost_model_name", ctypes.c_char_p, ctypes.c_void_p)
dp_config_default = _proto("dp_config_default", None, P(Config), ctypes.c_void_p)
dp_config_check = _proto("dp_config_check", ctypes.c_int, P(Config))
dp_plan = _proto("dp_plan", ctypes.c_int, ctypes.c_void_p, P(Config), P(Sample), ctypes.c_size_t,
                 ctypes.c_int, P(Result))
dp_result_free = _proto("dp_result_free", None, P(Result))
dp_instructions = _proto("dp_instructions", ctypes.c_int, P(Result), ctypes.c_int, ctypes.c_int,
                         P(Stream))
dp_stream_free = _proto("dp_stream_free", None, P(Stream))
dp_check_streams = _proto("dp_check_streams", ctypes.c_int, P(Stream), ctypes.c_int)
dp_stage_layers = _proto("dp_stage_layers", None, P(Config), ctypes.c_int, P(ctypes.c_int),
                         P(ctypes.c_int))
class LengthSource(ctypes.Structure):
    _fields_ = [("histogram", ctypes.c_bool), ("dims", ctypes.c_int), ("v", ctypes.POINTER(Sample)),
                ("weight", ctypes.POINTER(ctypes.c_double)), ("n", ctypes.c_size_t),
                ("total", ctypes.c_double), ("name", ctypes.c_char * 256)]


dp_lengths_load = _proto("dp_lengths_load", ctypes.c_int, ctypes.c_char_p, P(LengthSource))
dp_lengths_free = _proto("dp_lengths_free", None, P(LengthSource))
dp_lengths_batch = _proto("dp_lengths_batch", ctypes.c_int, P(LengthSource), ctypes.c_long,
                          ctypes.c_uint64, ctypes.c_int, ctypes.c_int, P(Samples))
dp_mixture_batch = _proto("dp_mixture_batch", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                          ctypes.c_long, ctypes.c_uint64, P(Samples), ctypes.c_void_p)
dp_samples_free = _proto("dp_samples_free", None, P(Samples))
