"""`python -m minicompress report PATH`: the per-layer report of a model saved with `mc.report.save`.

The example input is rebuilt from the file's metadata: rows of the embedded digits data set when the saved
example had 64 features per row (every zoo model), else a seeded normal batch of the recorded shape; a file
without an example input gets the static columns only (dtype, bits, scheme, sparsity, params, bytes).
"""
import json
import sys

import numpy as np

from ..core import manual_seed, rng
from .layers import summarize
from .serialize import load, read


def example_for(meta, batch):
    info = meta.get("example_input")
    if not info:
        return None
    shape = [batch] + list(info["shape"][1:])
    if shape[1:] == [64]:
        from ..data import load_digits
        return load_digits()[0][:batch]
    manual_seed(0)
    return rng().normal(size=shape).astype(np.dtype(info["dtype"]))


def run(path, json_path=None, batch=32, latency=True, out=print):
    """Print the report of the model file at `path`; returns the exit status (2 for a bad file)."""
    try:
        meta, _ = read(path)
        model = load(path)
    except ValueError as exc:
        print(f"minicompress report: {exc}", file=sys.stderr)
        return 2
    x = example_for(meta, batch)
    rep = summarize(model, x, latency=latency)
    out(f"{path}: {type(model).__name__} ({meta['class']})")
    for key, value in (meta.get("metadata") or {}).items():
        if key == "tuning" and isinstance(value, dict) and "history" in value:
            out(f"tuning: goal met={value.get('met')}, accuracy {value.get('accuracy'):.6g} vs baseline "
                f"{value.get('baseline'):.6g}, best trial {value.get('best_trial')} ({value.get('stop_reason')})")
            out(_history_table(value["history"]))
        else:
            text = json.dumps(value)
            out(f"{key}: {text if len(text) <= 200 else text[:197] + '...'}")
    out(rep.table())
    if json_path:
        rep.save_json(json_path)
        out(f"wrote {json_path}")
    return 0


def _history_table(history):
    """The tuning history saved by TuneResult.save, as the tuner prints it (plain dicts; no import of tune)."""
    lines = [f"{'trial':>5}  {'accuracy':>11}  {'met':>3}  {'size KB':>8}  configuration"]
    for t in history.get("trials", []):
        size = "" if t.get("size_bytes") is None else f"{t['size_bytes'] / 1024:8.1f}"
        acc = "nan" if t.get("accuracy") is None else f"{t['accuracy']:.6g}"
        diff = "fp32 baseline" if t.get("trial") == 0 else \
            ("; ".join(f"{op}->{'/'.join(str(v) for v in ch.values())}" for op, ch in t.get("diff", {}).items())
             or "all int8 (default recipe)")
        met = "yes" if t.get("met") else "no"
        lines.append(f"{t.get('trial', '?'):>5}  {acc:>11}  {met:>3}  {size:>8}  {diff[:70]}")
    return "\n".join(lines)
