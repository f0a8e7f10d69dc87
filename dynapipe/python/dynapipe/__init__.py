"""dynapipe: bindings over libdynapipe (the planner) and a pipeline executor on
torch.distributed.

  CostModel(dir, model)                     a profiled cost model (dynapipe/data/costmodels)
  config(cm, **fields)                      a dp_config: the library's defaults, then fields
  plan(cm, cfg, samples, method)            a Plan: micro-batches, schedule, simulated time
  Plan.stream(stage, replica)               one rank's instruction stream (list of Instr)
  check_streams(streams)                    the library's checker (matching, no deadlock)
  mixture(tokens, seed)                     a batch from the built-in multi-task mixture
  Lengths(path).batch(tokens, seed)         a batch from a lengths file (dynapipe/data/lengths)
  Planner                                   plans the next batch in a background thread
  executor.PipelineExecutor                 runs a rank's stream with torch.distributed
Errors from the library raise DynapipeError (DynapipeValueError, also a ValueError, for bad
input) carrying the library's message.
"""
import collections
import ctypes
import threading
import time

from . import _lib

__all__ = ["DynapipeError", "DynapipeValueError", "CostModel", "config", "plan", "Plan", "Instr",
           "check_streams", "mixture", "Lengths", "Planner", "OPCODES"]

OPCODES = _lib.OPCODES
_BAD_INPUT = {"EINVAL", "EEMPTY", "ERANGE", "EFORMAT", "EGRID", "EINFEASIBLE", "ECHECK"}


class DynapipeError(RuntimeError):
    """A libdynapipe call failed: .status is the code's name (EINVAL, ERANGE, ...)."""

    def __init__(self, status, message):
        super().__init__(f"{message} [{status}]")
        self.status = status
        self.message = message


class DynapipeValueError(DynapipeError, ValueError):
    """Bad input: samples, options, a cost model that does not cover them, streams."""


def _check(st):
    if st == 0:
        return
    name = _lib.STATUS[st] if 0 <= st < len(_lib.STATUS) else str(st)
    msg = (_lib.dp_last_error() or b"").decode("utf-8", "replace")
    raise (DynapipeValueError if name in _BAD_INPUT else DynapipeError)(name, msg)


class CostModel:
    """<dir>/<model>_time.csv, _memory.csv and model_state.csv ("gpt" and "t5" name the
    bundled GPT 6.7B and T5 11B profiles)."""

    def __init__(self, directory, model, tp=1):
        self._p = ctypes.c_void_p()
        _check(_lib.dp_cost_model_load(str(directory).encode(), model.encode(), int(tp),
                                       ctypes.byref(self._p)))

    @property
    def name(self):
        return _lib.dp_cost_model_name(self._p).decode()

    @property
    def encdec(self):
        return bool(_lib.dp_cost_model_encdec(self._p))

    def __del__(self):
        if getattr(self, "_p", None) and _lib is not None:
            _lib.dp_cost_model_free(self._p)
            self._p = None


def config(cm, **fields):
    """A dp_config: the library's defaults for cm, then `fields` (dp_config's names:
    stages, dp_size, layers_enc, layers_dec, hidden, memory_mb, ...). Checked."""
    c = _lib.Config()
    _lib.dp_config_default(ctypes.byref(c), cm._p)
    names = {f[0] for f in _lib.Config._fields_}
    for k, v in fields.items():
        if k not in names:
            raise DynapipeValueError("EINVAL", f"config: no field {k!r} (fields: {sorted(names)})")
        setattr(c, k, v)
    _check(_lib.dp_config_check(ctypes.byref(c)))
    return c


Instr = collections.namedtuple("Instr", "op mb peer shape")
Instr.__doc__ = """One instruction: op (a name of OPCODES), the replica-local micro-batch, the
peer rank of a send or receive (-1 otherwise), and the shape (micro-batch size, padded
input, padded target, hidden; LoadInput: hidden 1)."""

Microbatch = collections.namedtuple("Microbatch",
                                    "samples padded_input padded_target replica mbs")
Microbatch.__doc__ = """A planned micro-batch: its samples (indices into the batch; packing:
those with tokens in it), padded shape, replica, and size (samples, or packing's rows)."""


class Plan:
    """One global batch's plan: micro-batches (indices into the batch's samples, their padded
    shape and replica), the simulated iteration, and per-rank instruction streams."""

    def __init__(self, cm, cfg, samples, method):
        n = len(samples)
        arr = (_lib.Sample * max(n, 1))(*[_lib.Sample(int(a), int(b)) for a, b in samples])
        self._r = _lib.Result()
        self.cfg = cfg
        self.method = method
        t0 = time.perf_counter()
        _check(_lib.dp_plan(cm._p, ctypes.byref(cfg), arr, n, _lib.METHODS[method],
                            ctypes.byref(self._r)))
        self.plan_seconds = time.perf_counter() - t0
        r = self._r
        self.microbatches = [
            Microbatch([r.mb[k].samples[i] for i in range(r.mb[k].n)], r.mb[k].padded_input,
                       r.mb[k].padded_target, r.mb[k].replica, r.mb[k].mbs)
            for k in range(r.n_mb)]
        # replica-local order: local micro-batch j of replica q = microbatches[local[q][j]]
        self.local = [[r.replica_mb[q][j] for j in range(r.replica_n[q])]
                      for q in range(r.replicas)]
        self.stages, self.replicas = r.stages, r.replicas
        self.iteration_ms, self.tokens_per_s = r.iteration_ms, r.tokens_per_s
        self.real_tokens, self.padded_tokens = r.real_tokens, r.padded_tokens

    def stream(self, stage, replica=0):
        """Rank `stage` of pipeline `replica`: its instructions, in order."""
        s = _lib.Stream()
        _check(_lib.dp_instructions(ctypes.byref(self._r), int(replica), int(stage),
                                    ctypes.byref(s)))
        try:
            return [Instr(OPCODES[s.v[i].op], s.v[i].mb, s.v[i].peer, tuple(s.v[i].shape))
                    for i in range(s.n)]
        finally:
            _lib.dp_stream_free(ctypes.byref(s))

    def __del__(self):
        if getattr(self, "_r", None) is not None and _lib is not None:
            _lib.dp_result_free(ctypes.byref(self._r))
            self._r = None


def plan(cm, cfg, samples, method="dynapipe"):
    """Plan one global batch: samples are (input_len, target_len) pairs. method: dynapipe,
    padding, packing or token_budget."""
    if method not in _lib.METHODS:
        raise DynapipeValueError("EINVAL", f"method {method!r}: accepted {sorted(_lib.METHODS)}")
    return Plan(cm, cfg, samples, method)


def check_streams(streams):
    """The library's checker over one pipeline's streams (lists of Instr, rank = index):
    every send has its receive with the same shape, starts precede finishes, and a
    rendezvous execution of all ranks finishes. Raises DynapipeValueError (ECHECK) naming the
    rank and instruction."""
    S = len(streams)
    arrs, objs = [], (_lib.Stream * S)()
    for r, st in enumerate(streams):
        a = (_lib.Instr * max(len(st), 1))()
        for i, ins in enumerate(st):
            a[i] = _lib.Instr(OPCODES.index(ins.op), ins.mb, ins.peer, (ctypes.c_int32 * 4)(*ins.shape))
        arrs.append(a)
        objs[r] = _lib.Stream(r, S, ctypes.cast(a, ctypes.POINTER(_lib.Instr)), len(st))
    _check(_lib.dp_check_streams(objs, S))


class Planner:
    """Plans batches ahead of training: submit(samples) starts planning in a background
    thread (the library releases the GIL in its C calls); result() waits for it. The
    planner's time is reported beside the iteration's (Plan.plan_seconds)."""

    def __init__(self, cm, cfg, method="dynapipe"):
        self.cm, self.cfg, self.method = cm, cfg, method
        self._t = None
        self._out = None

    def submit(self, samples):
        def work():
            try:
                self._out = plan(self.cm, self.cfg, samples, self.method)
            except Exception as e:  # handed to the caller by result()
                self._out = e
        self._t = threading.Thread(target=work, daemon=True)
        self._t.start()

    def result(self):
        self._t.join()
        out, self._out = self._out, None
        if isinstance(out, Exception):
            raise out
        return out


def mixture(tokens, seed=0):
    """About `tokens` tokens of (input_len, target_len) samples from the built-in multi-task
    mixture (dynapipe/README.md), the same for the same seed."""
    out = _lib.Samples()
    _check(_lib.dp_mixture_batch(None, 0, int(tokens), int(seed), ctypes.byref(out), None))
    try:
        return [(out.v[i].input_len, out.v[i].target_len) for i in range(out.n)]
    finally:
        _lib.dp_samples_free(ctypes.byref(out))


class Lengths:
    """A lengths file (per-sample rows, a histogram or JSON lines; dynapipe/data/lengths and
    dynapipe/README.md) to draw global batches from."""

    def __init__(self, path):
        self._src = _lib.LengthSource()
        _check(_lib.dp_lengths_load(str(path).encode(), ctypes.byref(self._src)))
        self._loaded = True

    def batch(self, tokens, seed=0, target_len_1d=0, max_total=0):
        """About `tokens` tokens of (input_len, target_len) samples (histograms sampled with
        `seed`; a 1-D histogram's samples get target `target_len_1d`; bins longer than
        max_total > 0 left out)."""
        out = _lib.Samples()
        _check(_lib.dp_lengths_batch(ctypes.byref(self._src), int(tokens), int(seed),
                                     int(target_len_1d), int(max_total), ctypes.byref(out)))
        try:
            return [(out.v[i].input_len, out.v[i].target_len) for i in range(out.n)]
        finally:
            _lib.dp_samples_free(ctypes.byref(out))

    def __del__(self):
        if getattr(self, "_loaded", False) and _lib is not None:
            _lib.dp_lengths_free(ctypes.byref(self._src))
            self._loaded = False
