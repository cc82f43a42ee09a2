"""minicompress.report: what a compressed model stores, computes and loses -- and saving it whole.

    rep = mc.report.summarize(qmodel, x, reference=float_model)   # per-layer table + totals
    print(rep.table()); rep.save_json("report.json")
    mc.report.save(qmodel, "model.npz", example_input=x); mc.report.load("model.npz")

Files: size.py (bytes), latency.py (median wall time), layers.py (the per-layer report), serialize.py (save/load).
"""
from .latency import measure_latency_ms
from .layers import COLUMNS, ModelReport, summarize
from .serialize import architecture, check_same_architecture, load, read, save
from .size import model_size_bytes, module_size_bytes

__all__ = ["summarize", "ModelReport", "COLUMNS", "model_size_bytes", "module_size_bytes", "measure_latency_ms",
           "save", "load", "read", "architecture", "check_same_architecture"]
