"""Tables and figures drawn for the page (issue 40): `aprbook.display.show_table` (no index, no
truncation, no NaN, rounding per column, text headers, a caption that says "Table", wide tables
scrolled or transposed on purpose; the same HTML in Jupyter Book), and `book_style` (figures whose
text reads at least at body size once the saved PNG is scaled to the book's content column, a
colour-blind-safe palette, legends outside the data area, small multiples)."""
from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from aprbook.display import (BODY_PX, CONTENT_WIDTH_PX, FIG_WIDTH_IN, MIN_TEXT_PX, OKABE_ITO, SAVE_DPI,  # noqa: E402
                             book_style, displayed_text_px, format_column, legend_outside, show_table,
                             small_multiples)
from aprbook.provenance import ResultStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cells(table):
    return [table.header] + table.rows


# --- tables ------------------------------------------------------------------------------------------
def test_row_numbers_are_dropped_and_labels_kept():
    df = pd.DataFrame({"objects": [1, 2, 4], "cr": [163.227895, 157.066507, 72.555771]}, index=[0, 20, 40])
    t = show_table(df, "canvases")
    assert t.header == ["objects", "cr"]  # the filtered row numbers 0, 20, 40 are not a column
    named = show_table(df.set_index("objects"))
    assert named.header == ["objects", "cr"] and [r[0] for r in named.rows] == ["1", "2", "4"]
    multi = show_table(pd.DataFrame({"a": ["x", "y"], "b": ["p", "q"], "v": [1.5, 2.5]}).set_index(["a", "b"]))
    assert multi.header == ["a", "b", "v"]
    assert show_table(df, index=True).header == ["", "objects", "cr"]


def test_every_row_and_column_is_shown():
    df = pd.DataFrame(np.arange(300 * 25).reshape(300, 25), columns=[f"c{i}" for i in range(25)])
    t = show_table(df, "big")
    html, text = t._repr_html_(), repr(t)
    assert t.shape == (300, 25)
    assert html.count("<tr>") == 301 and html.count("<td") == 300 * 25
    assert "..." not in html and "…" not in html and "..." not in text
    assert "7499" in html and "7,499" not in html  # the last cell; under 10000: no separator
    assert len(text.splitlines()) == 1 + 2 + 300


def test_missing_values_are_empty_or_explicit():
    df = pd.DataFrame({"a": [1.0, np.nan], "b": ["x", None], "c": [pd.NA, 2], "d": [pd.NaT, pd.Timestamp(0)]})
    t = show_table(df)
    html = t._repr_html_()
    assert "NaN" not in html and "None" not in html and "<NA>" not in html and "NaT" not in html
    assert t.rows[1][:3] == ["", "", "2"] and t.rows[0][1:3] == ["x", ""]
    assert show_table(df, na="–").rows[1][:2] == ["–", "–"]


def test_numbers_are_rounded_per_column():
    df = pd.DataFrame({
        "n_particles": [1606, 14299, 85088],            # ints: as ints, separators from 10000
        "bytes": [85088.0, np.nan, 12.0],                # whole floats (an int column with a NaN): as ints
        "cr": [163.227895, 72.555771, 18.333030],        # typical 72.6: 1 decimal at 3 significant digits
        "r2": [0.98971, 0.99949, 0.93741],               # typical 0.99: 3 decimals
        "delta": [-0.0000123, 0.25, 0.5],                # a tiny negative number is 0.000, never -0.000
        "seconds": [0.0006, 0.0014, 0.0310],             # typical 0.0014: 5 decimals (0.00140)
        "lr": [1e-4, 3e-5, 1e-5],                        # tiny: significant digits of each
    })
    t = show_table(df)
    col = {h: [r[j] for r in t.rows] for j, h in enumerate(t.header)}
    assert col["n_particles"] == ["1,606", "14,299", "85,088"]
    assert col["bytes"] == ["85,088", "", "12"]
    assert col["cr"] == ["163.2", "72.6", "18.3"]
    assert col["r2"] == ["0.990", "0.999", "0.937"]
    assert col["delta"] == ["0.000", "0.250", "0.500"]
    assert col["seconds"] == ["0.00060", "0.00140", "0.03100"]
    assert col["lr"] == ["0.0001", "3e-05", "1e-05"]
    assert "-0.0" not in t._repr_html_() and all(t.numeric)


def test_digits_int_dict_and_format():
    df = pd.DataFrame({"acc": [0.93333, 0.99667], "share": [0.25, 0.5], "n": [3, 4], "name": ["a", "b"]})
    assert [r[0] for r in show_table(df, digits=4).rows] == ["0.9333", "0.9967"]
    assert [r[2] for r in show_table(df, digits=4).rows] == ["3", "4"]  # integers stay integers
    t = show_table(df, digits={"acc": 1, "share": ".0%", "name": str.upper})
    assert [r[:2] + r[3:] for r in t.rows] == [["0.9", "25%", "A"], ["1.0", "50%", "B"]]
    assert format_column([True, False, None])[0] == ["yes", "no", ""]


def test_headers_are_text():
    pivot = pd.DataFrame({"what": ["conv", "conv", "pool"], "cr": [163.227895, 18.0, 163.227895],
                          "speedup": [12.34, 4.56, 1.2]}).pivot_table(index="what", columns="cr", values="speedup")
    t = show_table(pivot, "speed-up against CR")
    assert t.header == ["what", "18", "163.2"]   # a float header: no ".0", 4 significant digits
    assert t.span == (1, "cr")                    # the columns' name spans the value columns
    assert '<th class="aprbook-span" colspan="2">cr</th>' in t._repr_html_()
    assert t.rows == [["conv", "4.56", "12.3"], ["pool", "", "1.2"]]  # each column: its own decimals
    mi = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("fwd", "ms"), ("bwd", "ms")]))
    assert show_table(mi).header == ["fwd / ms", "bwd / ms"]
    assert show_table(pd.DataFrame({0.5: [1], 2.0: [2]})).header == ["0.5", "2"]


def test_caption_says_table():
    df = pd.DataFrame({"a": [1]})
    t = show_table(df, "Best validation accuracy of each network")
    assert t.caption_text == "Table: Best validation accuracy of each network"
    numbered = show_table(df, "Best *E*", label="Table 4.4 (ours)")
    assert numbered.caption_text == "Table 4.4 (ours): Best *E*"
    html = numbered._repr_html_()
    assert "<caption>" in html and "Table 4.4 (ours):" in html and "<em>E</em>" in html and "Fig" not in html
    assert show_table(df, "Table 4.3: the networks").caption_text == "Table 4.3: the networks"
    assert repr(numbered).splitlines()[0] == "Table 4.4 (ours): Best *E*"
    assert "<caption>" not in show_table(df)._repr_html_()


def test_text_is_escaped():
    t = show_table(pd.DataFrame({"<b>": ["a < b & c"]}), "x <y>")
    html = t._repr_html_()
    assert "a &lt; b &amp; c" in html and "&lt;b&gt;" in html and "x &lt;y&gt;" in html


def test_wide_tables_scroll_or_transpose_on_purpose():
    wide = pd.DataFrame({"size": [256, 512], **{f"m{i}": [i + 0.5, i + 1.25] for i in range(12)}})
    t = show_table(wide, "scaling")
    html = t._repr_html_()
    assert t.wide and 'class="aprbook-table aprbook-table-wide"' in html and "overflow-x:auto" in html
    assert "13 columns: scroll sideways" in html
    narrow = show_table(wide.iloc[:, :5], "narrow")
    assert not narrow.wide and "aprbook-table-wide" not in narrow._repr_html_().split("</style>")[1]
    tr = show_table(wide, "scaling", wide="transpose")
    assert tr.transposed and tr.header == ["size", "256", "512"] and len(tr.rows) == 12
    assert tr.rows[0] == ["m0", "0.50", "1.25"] and not tr.wide and tr.numeric == [False, True, True]
    assert show_table(wide, wide="auto").transposed
    tall_and_wide = pd.concat([wide] * 10, ignore_index=True)
    assert not show_table(tall_and_wide, wide="auto").transposed  # 21 columns when transposed: scroll
    with pytest.raises(ValueError, match="wide="):
        show_table(wide, wide="shrink")


def test_plain_text_repr_is_aligned():
    t = show_table(pd.DataFrame({"network": ["Pixels", "APR (E = 0.2)"], "acc": [0.9333, 0.99667]}), "acc")
    lines = repr(t).splitlines()
    assert lines[0] == "Table: acc"
    assert lines[1] == "network" + " " * 6 + "  " + "  acc"  # text left-aligned, numbers (and their header) right
    assert lines[3] == "Pixels" + " " * 7 + "  " + "0.933"
    assert len({len(x) for x in lines[1:]}) == 1  # every row as wide as the header


@pytest.mark.skipif(not (Path(sys.executable).parent / "jupyter-book").exists(), reason="jupyter-book not installed")
def test_table_renders_in_jupyter_book(tmp_path):
    """A notebook's show_table output, shown directly and glued, comes out of a Jupyter Book 1.x build
    as the same HTML table (not escaped, not replaced by the text/plain repr), with its caption."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    (tmp_path / "_config.yml").write_text('title: t\nexecute:\n  execute_notebooks: "off"\n')
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: nb\n")
    code = ("import pandas as pd\nfrom aprbook.display import show_table\nfrom myst_nb import glue\n"
            "df = pd.DataFrame({'network': ['Pixels', 'APR'], 'acc': [0.93333, 0.99667], 'n': [85088.0, None]})\n"
            "glue('claims', show_table(df, 'glued claims'), display=False)\n"
            "show_table(df, 'best accuracy', label='Table 4.4 (ours)')")
    nb = new_notebook(cells=[new_markdown_cell("# T"), new_code_cell(code),
                             new_markdown_cell("```{glue:} claims\n```\n")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "nb.ipynb")
    r = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(tmp_path), "-W", "-n"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    page = (tmp_path / "_build" / "html" / "nb.html").read_text()
    captions = re.findall(r"<caption>(.*?)</caption>", page)
    assert captions == ['<span class="aprbook-table-label">Table 4.4 (ours):</span> best accuracy',
                        '<span class="aprbook-table-label">Table:</span> glued claims']
    assert page.count('<td class="num">85,088</td>') == 2 and page.count('<td class="num">0.997</td>') == 2
    assert "&lt;table" not in page and "NaN" not in page and "Fig." not in page


# --- figures -----------------------------------------------------------------------------------------
def test_style_matches_the_saved_figure():
    """The figure shown in the notebook (hence on the page) is drawn at the dpi ResultStore saves at."""
    save_dpi = inspect.signature(ResultStore.save_figure).parameters["dpi"].default
    assert SAVE_DPI == save_dpi
    with book_style():
        assert plt.rcParams["figure.dpi"] == save_dpi and plt.rcParams["savefig.dpi"] == save_dpi
        assert tuple(plt.rcParams["figure.figsize"])[0] == FIG_WIDTH_IN
        assert [c.lower() for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]] == [c.lower() for c in OKABE_ITO]
        import seaborn as sns
        assert matplotlib.colors.to_hex(sns.color_palette()[0]) == OKABE_ITO[0].lower()  # seaborn follows
    assert plt.rcParams["figure.dpi"] != save_dpi or matplotlib.rcParamsDefault["figure.dpi"] == save_dpi  # restored


def test_book_style_as_a_statement_stays_on():
    """`book_style()` as a statement (the notebooks' setup cells) keeps the style on after the returned
    object is dropped, until restored; it once held an rc_context whose generator, collected with the
    dropped object, restored matplotlib's defaults at once (figures came out in the default style)."""
    import gc
    before = dict(plt.rcParams)
    book_style()
    gc.collect()
    try:
        assert plt.rcParams["font.size"] == 11 and plt.rcParams["figure.dpi"] == SAVE_DPI
        assert plt.rcParams["axes.prop_cycle"].by_key()["color"][0].lower() == OKABE_ITO[0].lower()
    finally:
        dict.update(plt.rcParams, {k: v for k, v in before.items() if k != "backend"})
    s = book_style(**{"axes.grid": False})
    assert plt.rcParams["axes.grid"] is False
    s.restore()
    s.restore()  # twice is harmless
    assert plt.rcParams["font.size"] == before["font.size"] and plt.rcParams["axes.grid"] == before["axes.grid"]


def _book_figure():
    """A figure of the kind the book draws: two panels, labels, a title, a legend outside."""
    fig, axes = small_multiples(2, ncols=2, aspect=0.8)
    x = np.linspace(1, 1e4, 20)
    for k in (1, 3, 5, 11):
        axes[0].plot(x, k * k * x * 1e-6, "o-", ms=3, label=f"conv {k}x{k}")
        axes[1].plot(x, 2 * k * k * x * 1e-6, "o-", ms=3, label=f"conv {k}x{k}")
    for ax, title in zip(axes, ("forward pass", "backward pass")):
        ax.set(xlabel="number of particles $N_p$", ylabel="time per call (ms)", title=title)
    legend_outside(fig, "bottom")
    fig.suptitle("time against particles")
    return fig


@pytest.mark.parametrize("content_px, min_px", [(CONTENT_WIDTH_PX, MIN_TEXT_PX), (624, MIN_TEXT_PX)])
def test_figure_text_is_readable_on_the_page(tmp_path, content_px, min_px):
    """Every text of a book figure, saved by ResultStore.save_figure (150 dpi PNG) and shown at the
    book's content width (720 px; 624 px in a 1280-px window), is at least 10 CSS px; at 720 px axis
    labels and titles are at least body size (16 px)."""
    with book_style():
        fig = _book_figure()
        store = ResultStore(tmp_path, "exp", "smoke", {})
        png = store.save_figure(fig, "fig", show=False)[0]
        with Image.open(png) as im:
            png_w = im.size[0]
        # the outside legend made room inside the figure: the PNG is the book's width (+ the small pad)
        assert abs(png_w - FIG_WIDTH_IN * SAVE_DPI) <= 0.05 * FIG_WIDTH_IN * SAVE_DPI, png_w
        sizes = displayed_text_px(fig, png_w, SAVE_DPI, content_px)
        texts = {t for t, _ in sizes}
        assert {"forward pass", "time per call (ms)", "conv 11x11", "time against particles"} <= texts
        small = [(t, round(px, 1)) for t, px in sizes if px < min_px]
        assert not small, f"text below {min_px} px at a {content_px}-px column: {small}"
        for t, pt in [(t.get_text(), t.get_fontsize()) for t in fig.findobj(matplotlib.text.Text)]:
            px = pt * SAVE_DPI / 72 * min(1.0, content_px / png_w)  # the formula, spelt out
            assert not t.strip() or px >= min_px, (t, px)
        if content_px == CONTENT_WIDTH_PX:
            labels = [px for t, px in sizes if t in ("forward pass", "time per call (ms)", "number of particles $N_p$")]
            assert labels and min(labels) >= BODY_PX, labels
        plt.close(fig)


def test_rendered_glyphs_have_the_computed_size(tmp_path):
    """The measured ink height of capital letters in the saved PNG is the cap height (0.73 em for
    DejaVu Sans) of the font size the formula assumes: points x dpi / 72 pixels per em."""
    with book_style():
        size_pt = plt.rcParams["xtick.labelsize"]
        fig = plt.figure(figsize=(3, 1))
        fig.text(0.1, 0.3, "HHHH", fontsize=size_pt, family="DejaVu Sans")
        path = tmp_path / "h.png"
        fig.savefig(path, dpi=SAVE_DPI)
        plt.close(fig)
    with Image.open(path) as im:
        ink = np.asarray(im.convert("L")) < 128
    rows = np.flatnonzero(ink.any(axis=1))
    cap_px = rows[-1] - rows[0] + 1
    em_px = size_pt * SAVE_DPI / 72
    assert abs(cap_px - 0.729 * em_px) <= 2, (cap_px, em_px)
    shown_em = em_px * CONTENT_WIDTH_PX / (FIG_WIDTH_IN * SAVE_DPI)
    assert shown_em >= MIN_TEXT_PX + 4  # tick labels read at about 15 px on the page


def test_legend_outside_leaves_the_data_area():
    import seaborn as sns
    with book_style():
        fig, ax = plt.subplots()
        df = pd.DataFrame({"x": np.tile(np.arange(5), 3), "y": np.arange(15.0), "h": np.repeat(list("abc"), 5)})
        sns.lineplot(data=df, x="x", y="y", hue="h", ax=ax)  # seaborn's own legend, inside
        ax.plot([0, 4], [0, 4], "k--", label="y = x")
        leg = legend_outside(ax)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        assert leg.get_window_extent(r).x0 >= ax.get_window_extent(r).x1
        assert [t.get_text() for t in leg.get_texts()] == ["a", "b", "c", "y = x"] and leg.get_title().get_text() == "h"
        assert leg.get_window_extent(r).x1 <= fig.bbox.x1 + 1  # inside the figure: the PNG keeps its width
        fig2, axes = small_multiples(3, ncols=3)
        for a in axes:
            a.plot([0, 1], [0, 1], label="same")
            a.plot([0, 1], [1, 0], label="other")
        leg2 = legend_outside(fig2, "bottom")
        fig2.canvas.draw()
        assert [t.get_text() for t in leg2.get_texts()] == ["same", "other"]
        assert leg2.get_window_extent().y1 <= min(a.get_tightbbox().y0 for a in axes) + 1
        with pytest.raises(ValueError):
            legend_outside(ax, "inside")
        plt.close("all")


def test_small_multiples_grid():
    with book_style():
        fig, axes = small_multiples(5, ncols=3, aspect=0.5, sharey=True)
        assert len(axes) == 5 and len(fig.axes) == 5
        w, h = fig.get_size_inches()
        assert w == FIG_WIDTH_IN and h == pytest.approx(2 * FIG_WIDTH_IN / 3 * 0.5)
        assert small_multiples(2)[1][1].get_subplotspec().colspan.start == 1
        plt.close("all")


def test_book_style_called_as_a_statement_lasts():
    """`book_style()` without keeping its result (how the notebooks call it) sets the style for the rest of
    the session: a garbage-collected result must not restore the previous settings."""
    import gc

    import matplotlib as mpl

    from aprbook.display import FIG_WIDTH_IN, book_style
    before = dict(mpl.rcParams)
    try:
        book_style()
        gc.collect()
        assert mpl.rcParams["figure.figsize"][0] == FIG_WIDTH_IN
        assert mpl.rcParams["figure.constrained_layout.use"]
    finally:
        mpl.rcParams.update(before)


def test_collapsed_wraps_a_table_in_details():
    import pandas as pd

    from aprbook.display import collapsed, show_table
    c = collapsed(show_table(pd.DataFrame({"a": [1, 2]}), "two rows"), "Every <row>")
    h = c._repr_html_()
    assert h.startswith('<details class="aprbook-collapsed"><summary>Every &lt;row&gt;</summary>') and "<table>" in h
    assert h.endswith("</details>") and "two rows" in repr(c)
    with pytest.raises(TypeError, match="_repr_html_"):
        collapsed(3, "x")
