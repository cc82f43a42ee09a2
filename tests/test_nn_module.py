"""Module bookkeeping: registration, traversal order, state_dict names, load_state_dict's all-or-nothing
checks (missing, unexpected, mis-shaped keys, bad files), hooks, modes, dtype casts, containers."""
import numpy as np
import pytest

import minicompress as mc
from minicompress import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.scale = nn.Parameter(np.ones(3, dtype=np.float32))
        self.register_buffer("steps", np.zeros((), dtype=np.int64))

    def forward(self, x):
        return self.bn(self.fc(x)) * self.scale


def snapshot(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_registration_order_and_names_follow_assignment():
    mc.manual_seed(0)
    model = nn.Sequential(Block(), nn.ReLU(), nn.Linear(3, 2))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.scale", "0.fc.weight", "0.fc.bias", "0.bn.weight", "0.bn.bias", "2.weight", "2.bias"]
    assert list(model.state_dict()) == ["0.scale", "0.steps", "0.fc.weight", "0.fc.bias", "0.bn.weight",
                                        "0.bn.bias", "0.bn.running_mean", "0.bn.running_var",
                                        "0.bn.num_batches_tracked", "2.weight", "2.bias"]
    assert [n for n, _ in model.named_modules()] == ["", "0", "0.fc", "0.bn", "1", "2"]
    assert model.get_submodule("0.bn") is model[0].bn


def test_state_dict_is_a_copy():
    model = Block()
    sd = model.state_dict()
    sd["fc.weight"][...] = 123.0
    assert not np.any(model.fc.weight.data == 123.0)


def test_load_state_dict_round_trip_copies_values():
    mc.manual_seed(1)
    a, b = Block(), Block()
    b.load_state_dict(a.state_dict())
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    a.fc.weight.data[...] = 0  # no aliasing between the two models
    assert np.any(b.fc.weight.data != 0)


def test_load_state_dict_names_every_problem_and_changes_nothing():
    mc.manual_seed(2)
    model = Block()
    before = snapshot(model)
    mc.manual_seed(3)
    sd = Block().state_dict()                      # different values, same names and shapes
    del sd["bn.bias"]                              # missing
    sd["extra.weight"] = np.zeros(2)               # unexpected
    sd["fc.weight"] = np.zeros((4, 3))             # mis-shaped (transposed)
    with pytest.raises(ValueError) as info:
        model.load_state_dict(sd)
    msg = str(info.value)
    assert "bn.bias" in msg and "extra.weight" in msg and "fc.weight" in msg and "(4, 3)" in msg
    assert "unchanged" in msg
    for k, v in snapshot(model).items():           # not one array was copied, not even the valid ones
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_non_strict_load_skips_missing_and_unexpected_but_not_bad_shapes():
    model = Block()
    sd = Block().state_dict()
    del sd["scale"]
    sd["extra"] = np.zeros(1)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert missing == ["scale"] and unexpected == ["extra"]
    sd["fc.bias"] = np.zeros(7)
    with pytest.raises(ValueError, match=r"fc.bias: shape \(7,\)"):
        model.load_state_dict(sd, strict=False)


def test_save_and_load_file_and_bad_files(tmp_path):
    mc.manual_seed(4)
    model = Block()
    path = tmp_path / "block.npz"
    model.save(path)
    other = Block()
    other.load_state_dict(str(path))
    np.testing.assert_array_equal(other.fc.weight.data, model.fc.weight.data)
    before = snapshot(other)
    with pytest.raises(ValueError, match="no file"):
        other.load_state_dict(str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not an npz file")
    with pytest.raises(ValueError, match="not a readable .npz"):
        other.load_state_dict(str(bad))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="npz"):
        other.load_state_dict(str(truncated))
    for k, v in snapshot(other).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    with pytest.raises(TypeError, match="mapping"):
        other.load_state_dict(42)


def test_forward_hooks_can_watch_and_replace():
    lin = nn.Linear(2, 2)
    seen = []
    h1 = lin.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    h2 = lin.register_forward_hook(lambda m, args, out: out * 0)
    out = lin(mc.Tensor(np.ones((3, 2))))
    assert seen == [(3, 2)] and np.all(out.data == 0)
    h1.remove()
    h2.remove()
    assert np.any(lin(mc.Tensor(np.ones((3, 2)))).data != 0) and len(seen) == 1


def test_train_eval_zero_grad_and_dtype_cast():
    model = nn.Sequential(Block(), nn.Dropout(0.5))
    model.eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model(mc.Tensor(np.ones((4, 4)))).sum().backward()
    assert model[0].fc.weight.grad is not None
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model[0].bn.running_mean.dtype == np.float64 and model[0].steps.dtype == np.int64


def test_assignment_errors_and_set_submodule():
    model = Block()
    with pytest.raises(TypeError, match="is a parameter"):
        model.scale = np.ones(3)
    with pytest.raises(RuntimeError, match="super"):
        class Broken(nn.Module):
            def __init__(self):
                self.x = 1
        Broken()
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    seq.set_submodule("1", nn.Tanh())
    assert isinstance(seq[1], nn.Tanh)
    with pytest.raises(AttributeError, match="no submodule"):
        seq.get_submodule("5")
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(nn.Linear(2, 2), lambda x: x)
