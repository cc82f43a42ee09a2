"""The tuning history: one row per trial, printable as a table and savable as JSON.

Each `Trial` records what was tried and what it gave, so a tuning run is never opaque:

    trial  the trial number (0 = the float baseline, 1 = the first compressed configuration, ...)
    config the full configuration {op: {"dtype", "scheme", "granularity", "observer"}}
    diff   the part of `config` that differs from all-INT8 with the default recipe
    accuracy, met (the goal), loss (degradation in the goal's units), size_bytes, latency_ms, seconds (wall)
    note   the strategy's reason for the trial ("stage 2: fall back fc2 alone", ...)
"""
import json
import math
from dataclasses import asdict, dataclass, field

from .space import describe_diff


@dataclass
class Trial:
    trial: int
    config: dict
    diff: dict
    accuracy: float
    met: bool
    loss: float = 0.0
    size_bytes: int = None
    latency_ms: float = None
    seconds: float = 0.0
    note: str = ""
    strategy: str = ""

    def describe(self):
        return "fp32 baseline" if self.trial == 0 else describe_diff(self.diff, len(self.config))


@dataclass
class History:
    trials: list = field(default_factory=list)
    criterion: str = "relative"  # how `loss` is expressed: a fraction of the baseline, or metric units

    def append(self, trial):
        self.trials.append(trial)

    def __len__(self):
        return len(self.trials)

    def __iter__(self):
        return iter(self.trials)

    def __getitem__(self, i):
        return self.trials[i]

    def table(self, max_width=60):
        """A plain-text table of every trial (what the tuner tried and what each try gave)."""
        head = f"{'trial':>5}  {'accuracy':>11}  {'loss':>10}  {'met':>3}  {'size KB':>8}  {'ms':>7}  configuration"
        lines = [head, "-" * len(head)]
        for t in self.trials:
            size = "" if t.size_bytes is None else f"{t.size_bytes / 1024:8.1f}"
            lat = "" if t.latency_ms is None else f"{t.latency_ms:7.2f}"
            desc = t.describe()
            if len(desc) > max_width:
                desc = desc[:max_width - 3] + "..."
            accuracy = math.nan if t.accuracy is None else t.accuracy  # JSON stores NaN as null
            loss = math.nan if t.loss is None else t.loss
            loss = f"{loss:+.2%}" if self.criterion == "relative" else f"{loss:+.4g}"
            lines.append(f"{t.trial:>5}  {accuracy:>11.6g}  {loss:>10}  {'yes' if t.met else 'no':>3}  "
                         f"{size:>8}  {lat:>7}  {desc}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def to_dict(self):
        return {"criterion": self.criterion, "trials": [_jsonable(asdict(t)) for t in self.trials]}

    def save(self, path):
        """Write the history as JSON (one object per trial); returns the path."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)
        return path

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get("trials"), list):
            raise ValueError(f"History.load: {path!r} is not a tuning history (expected {{'trials': [...]}})")
        return cls([Trial(**t) for t in data["trials"]], criterion=data.get("criterion", "relative"))


def _jsonable(value):
    """Plain JSON types (numpy scalars -> Python numbers; NaN/inf -> None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
