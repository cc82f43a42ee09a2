"""`python -m minicompress figures`: the course figures are written as valid, non-blank PNGs; names are checked."""
import os

import matplotlib.image as mpimg
import numpy as np
import pytest

import minicompress as mc
from minicompress import cli
from minicompress.report import figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHEAP = ["quant_grid", "observer_ranges", "sparsity_patterns", "bf16_error"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures") / "nested" / "out"     # make_figures creates missing directories
    code = cli.main(["figures", "--out", str(out), "--fast", "--only", *CHEAP])
    return code, out


def test_the_command_writes_exactly_the_requested_figures(made, capsys):
    code, out = made
    assert code == 0
    assert sorted(os.listdir(out)) == sorted(f"{name}.png" for name in CHEAP)


@pytest.mark.parametrize("name", CHEAP)
def test_each_figure_is_a_valid_non_blank_png(made, name):
    _, out = made
    path = out / f"{name}.png"
    raw = path.read_bytes()
    assert raw[:8] == PNG_MAGIC and len(raw) > 10_000
    image = mpimg.imread(str(path))
    height, width = image.shape[:2]
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert 300 <= height <= 2000 and 500 <= width <= 2000            # ~110 dpi on a few inches, not a thumbnail
    rgb = image[..., :3]
    not_white = np.any(rgb < 0.95, axis=-1).mean()
    assert 0.03 < not_white < 0.97                                   # something drawn, not a filled rectangle
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20           # several colours (curves, text, colormap)


def test_figures_differ_from_each_other(made):
    _, out = made
    contents = {(out / f"{name}.png").read_bytes() for name in CHEAP}
    assert len(contents) == len(CHEAP)


def test_unknown_name_is_a_clear_error_listing_valid_names(tmp_path, capsys):
    out = tmp_path / "never"
    assert cli.main(["figures", "--out", str(out), "--only", "bogus", "quant_grid"]) == 2
    err = capsys.readouterr().err
    assert "'bogus'" in err and "quant_grid" not in err.split("valid names:")[0]
    for name in figures.FIGURES:
        assert name in err.split("valid names:")[1]
    assert not out.exists()                                          # nothing made before the names are checked
    with pytest.raises(ValueError, match="unknown figure name.*'nope'.*valid names: quant_grid"):
        figures.make_figures(tmp_path, only=["nope"], log=None)


def test_check_names_keeps_the_canonical_order_and_defaults_to_all():
    assert figures.check_names(None) == list(figures.FIGURES)
    assert figures.check_names(["bf16_error", "quant_grid", "bf16_error"]) == ["quant_grid", "bf16_error"]
    assert figures.check_names("graph_fusion") == ["graph_fusion"]
    assert len(figures.FIGURES) == 10
    for name, fn in figures.FIGURES.items():
        assert fn.__name__ == f"fig_{name}" and fn.__doc__


def test_making_figures_leaves_the_callers_random_stream_alone(tmp_path):
    mc.manual_seed(123)
    expected = mc.core.rng().standard_normal(4)
    mc.manual_seed(123)
    figures.make_figures(tmp_path, fast=True, only=["sparsity_patterns"], log=None)
    np.testing.assert_array_equal(mc.core.rng().standard_normal(4), expected)


def test_kernel_ladder_rungs_are_exact_on_a_small_shape():
    m, k, n = 5, 24, 7
    methods = figures.kernel_ladder_methods(m, k, n, seed=3)
    r = np.random.default_rng(3)                                     # the same draws, independently
    a8 = r.integers(-128, 128, (m, k), dtype=np.int8)
    b8 = r.integers(-128, 128, (k, n), dtype=np.int8)
    au = r.integers(0, 256, (m, k), dtype=np.uint8)
    exact = a8.astype(np.int64) @ b8.astype(np.int64)
    for name in ("reference (NumPy int64)", "loops (Numba)", "tiled (Numba)"):
        np.testing.assert_array_equal(methods[name](), exact, err_msg=name)
    for name in [x for x in methods if x.startswith("packed")]:
        np.testing.assert_array_equal(methods[name](), au.astype(np.int64) @ b8.astype(np.int64), err_msg=name)
    assert methods["NumPy fp32 (BLAS)"]().shape == (m, n)


def test_readme_lists_every_figure_and_its_command():
    text = open(os.path.join(ROOT, "figures", "README.md"), encoding="utf-8").read()
    for name in figures.FIGURES:
        assert f"{name}.png" in text and f"python -m minicompress figures --only {name}" in text


def test_the_other_subcommands_are_unchanged():
    parser = cli.build_parser()
    assert parser.parse_args(["tour", "--fast"]).func is cli.run_tour
    assert parser.parse_args(["report", "m.npz", "--no-latency"]).func is cli.run_report
    args = parser.parse_args(["figures"])
    assert args.func is cli.run_figures and args.out == "figures" and args.only is None and not args.fast
