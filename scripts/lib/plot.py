"""plot.py: small SVG charts for the benchmark scripts (no plotting package needed).

    import sys; sys.path.insert(0, "scripts/lib"); import plot
    plot.lines(path, title, xlabel, ylabel, [(name, xs, ys), ...], marks=[(x, label), ...],
               logx=False)
    plot.bars(path, title, ylabel, groups, [(name, values), ...], logy=False)

lines() draws one polyline per series (marks: labelled vertical lines, such as the moments
a failure was injected); bars() draws grouped bars, one group per entry of groups and one
bar per series in each. Both write a self-contained SVG file.
"""
import math

W, H = 760, 420
L, R, T, B = 70, 170, 40, 50  # margins: the legend sits in the right one
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]


def _esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _ticks(lo, hi, log):
    if log:
        return [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    step = 10 ** math.floor(math.log10((hi - lo) or 1))
    while (hi - lo) / step > 8:
        step *= 2
    t, out = math.floor(lo / step) * step, []
    while t <= hi + 1e-9:
        out.append(t)
        t += step
    return out


def _fmt(v):
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.0e}"


class _Axes:
    def __init__(self, xlo, xhi, ylo, yhi, logx=False, logy=False):
        self.logx, self.logy = logx, logy
        f = (lambda v: math.log10(v)) if logx else float
        g = (lambda v: math.log10(v)) if logy else float
        self.fx, self.fy = f, g
        self.x0, self.x1 = f(xlo), f(xhi) if xhi > xlo else f(xlo) + 1
        self.y0, self.y1 = g(ylo), g(yhi) if yhi > ylo else g(ylo) + 1

    def px(self, x):
        return L + (self.fx(x) - self.x0) / (self.x1 - self.x0) * (W - L - R)

    def py(self, y):
        return H - B - (self.fy(y) - self.y0) / (self.y1 - self.y0) * (H - T - B)


def _frame(out, title, xlabel, ylabel):
    out.append(f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{_esc(title)}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">{_esc(xlabel)}</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(T + H - B) / 2})">{_esc(ylabel)}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#888"/>')


def _legend(out, names):
    for i, n in enumerate(names):
        y = T + 10 + 18 * i
        out.append(f'<rect x="{W - R + 12}" y="{y - 9}" width="12" height="10" fill="{COLORS[i % len(COLORS)]}"/>')
        out.append(f'<text x="{W - R + 30}" y="{y}">{_esc(n)}</text>')


def _write(path, out):
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'font-family="sans-serif" font-size="11">')
    with open(path, "w") as f:
        f.write("\n".join([head, '<rect width="100%" height="100%" fill="white"/>'] + out + ["</svg>"]) + "\n")


def lines(path, title, xlabel, ylabel, series, marks=(), logx=False):
    pts = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys) if not logx or x > 0]
    if not pts:
        raise ValueError(f"plot.lines({path}): no points")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    ax = _Axes(min(xs), max(xs), 0, max(ys) * 1.05 or 1, logx=logx)
    out = []
    _frame(out, title, xlabel, ylabel)
    for t in _ticks(min(xs), max(xs), logx):
        if min(xs) <= t <= max(xs):
            out.append(f'<text x="{ax.px(t):.1f}" y="{H - B + 15}" text-anchor="middle">{_fmt(t)}</text>')
    for t in _ticks(0, max(ys) * 1.05 or 1, False):
        out.append(f'<text x="{L - 5}" y="{ax.py(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{ax.py(t):.1f}" y2="{ax.py(t):.1f}" stroke="#eee"/>')
    for i, (x, label) in enumerate(marks):
        X = ax.px(x)
        out.append(f'<line x1="{X:.1f}" x2="{X:.1f}" y1="{T}" y2="{H - B}" stroke="#999" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{X + 3:.1f}" y="{T + 12 + 12 * (i % 3)}" font-size="10">{_esc(label)}</text>')
    for i, (_, sx, sy) in enumerate(series):
        p = " ".join(f"{ax.px(x):.1f},{ax.py(y):.1f}" for x, y in zip(sx, sy) if not logx or x > 0)
        out.append(f'<polyline fill="none" stroke="{COLORS[i % len(COLORS)]}" stroke-width="1.5" points="{p}"/>')
    _legend(out, [s[0] for s in series])
    _write(path, out)


def bars(path, title, ylabel, groups, series, logy=False):
    vals = [v for _, vs in series for v in vs if v and v > 0]
    if not vals:
        raise ValueError(f"plot.bars({path}): no values")
    lo = min(vals) / 2 if logy else 0
    ax = _Axes(0, 1, lo, max(vals) * (2 if logy else 1.05), logy=logy)
    out = []
    _frame(out, title, "", ylabel)
    for t in _ticks(lo, max(vals) * (2 if logy else 1.05), logy):
        if ax.y0 <= ax.fy(t) <= ax.y1:
            out.append(f'<text x="{L - 5}" y="{ax.py(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
            out.append(f'<line x1="{L}" x2="{W - R}" y1="{ax.py(t):.1f}" y2="{ax.py(t):.1f}" stroke="#eee"/>')
    gw = (W - L - R) / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    for g, name in enumerate(groups):
        x0 = L + g * gw + gw * 0.1
        out.append(f'<text x="{L + g * gw + gw / 2:.1f}" y="{H - B + 15}" text-anchor="middle">{_esc(name)}</text>')
        for i, (_, vs) in enumerate(series):
            v = vs[g] if g < len(vs) else None
            if not v or v <= 0:
                continue
            y = ax.py(v)
            out.append(f'<rect x="{x0 + i * bw:.1f}" y="{y:.1f}" width="{bw * 0.9:.1f}" '
                       f'height="{H - B - y:.1f}" fill="{COLORS[i % len(COLORS)]}"/>')
    _legend(out, [s[0] for s in series])
    _write(path, out)
