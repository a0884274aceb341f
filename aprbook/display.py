"""Tables and figures drawn for the book's page (issue 40: "a book a reader takes in at a glance").

Tables: :func:`show_table` formats a DataFrame once, for the reader: no index (an index that carries
labels becomes ordinary columns), every row and column (no "..."), an empty cell for NaN/None,
numbers rounded per column (integers as integers, floats to ``sig`` significant digits of the
column's typical value, never "-0.000"), headers as text (a float header 85088.0 reads "85088"), a
caption that says "Table", and tables wider than ``max_columns`` scrollable sideways on purpose (or
transposed). The object it returns renders as HTML in Jupyter and in the Jupyter Book (myst-nb shows
a ``text/html`` output as it is) and as aligned text (``text/plain``)::

    from aprbook.display import show_table
    show_table(table44, "Best validation accuracy of each network", label="Table 4.4 (ours)",
               digits={"best_val_accuracy": 4})

Figures: :func:`book_style` sets one matplotlib style for the book (figures 6.5 in wide, drawn and
saved at 150 dpi, text sized so that it reads at least at body size once the PNG is scaled to the
page's content column, the Okabe-Ito colour-blind-safe palette, constrained layout);
:func:`legend_outside` moves a legend out of the data area; :func:`small_multiples` lays out a grid
of panels at the book's width::

    from aprbook.display import book_style, legend_outside, small_multiples
    book_style()                              # once, after importing pyplot (or `with book_style():`)
    fig, axes = small_multiples(4, ncols=2)   # or plt.subplots() without figsize
    legend_outside(axes[0])                   # then store.save_figure(fig, name); no tight_layout()
"""
from __future__ import annotations

import html
import math
import numbers
import re

__all__ = ["show_table", "BookTable", "Collapsed", "collapsed", "format_column", "book_style", "legend_outside", "small_multiples",
           "book_figsize", "displayed_text_px", "OKABE_ITO", "FIG_WIDTH_IN", "SAVE_DPI", "CONTENT_WIDTH_PX",
           "BODY_PX", "MIN_TEXT_PX", "BOOK_RC"]

# --- tables ------------------------------------------------------------------------------------------

#: a table with more columns than this is wide: scrolled sideways (``wide="scroll"``) or transposed
MAX_COLUMNS = 8

_CSS = """<style>
.aprbook-table{max-width:100%;overflow-x:auto;margin:0.5em 0 1em 0}
.aprbook-table.aprbook-table-wide{overflow-x:auto}
.aprbook-table table{min-width:min(100%,36em);border-collapse:collapse;margin:0;font-size:0.9em;font-variant-numeric:tabular-nums;
  border-top:2px solid rgba(128,128,128,0.6);border-bottom:2px solid rgba(128,128,128,0.6)}
.aprbook-table caption{caption-side:top;text-align:left;color:inherit;padding:0 0 0.4em 0}
.aprbook-table caption .aprbook-table-label{font-weight:bold}
.aprbook-table caption .aprbook-scroll-hint{opacity:0.7;font-size:0.9em}
.aprbook-table th,.aprbook-table td{padding:0.25em 0.7em;border:none;vertical-align:top;background:none}
.aprbook-table thead th{border-bottom:1px solid rgba(128,128,128,0.6);font-weight:bold;vertical-align:bottom}
.aprbook-table tbody tr:nth-child(even){background:rgba(128,128,128,0.08)}
.aprbook-table .num{text-align:right}
.aprbook-table td.num{white-space:nowrap}
.aprbook-table .txt{text-align:left;max-width:32em}
.aprbook-table th.aprbook-span{text-align:center;border-bottom:1px solid rgba(128,128,128,0.6)}
</style>"""


def _is_na(v) -> bool:
    """True for None, NaN, NaT and pd.NA (a scalar); False for anything else, arrays included."""
    import numpy as np
    import pandas as pd

    if v is None:
        return True
    try:
        r = pd.isna(v)
    except (TypeError, ValueError):
        return False
    return isinstance(r, (bool, np.bool_)) and bool(r)


def _plain_number(v: float) -> str:
    """A header or stray float as short text: 85088.0 -> '85088', 163.227895 -> '163.2'."""
    if math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return f"{v:.4g}"


def _header(label) -> str:
    if isinstance(label, tuple):  # a MultiIndex column: its levels joined
        return " / ".join(_header(x) for x in label if not _is_na(x) and str(x) != "")
    if _is_na(label):
        return ""
    if isinstance(label, bool):
        return str(label)
    if isinstance(label, numbers.Integral):
        return str(int(label))
    if isinstance(label, numbers.Real):
        return _plain_number(float(label))
    return str(label)


def _finite_floats(values) -> list[float]:
    return [float(v) for v in values if not _is_na(v) and math.isfinite(float(v))]


def _decimals_for(values, sig: int) -> int | None:
    """Decimals that show ``sig`` significant digits of the column's typical (median nonzero) value;
    0 if every value is a whole number; None (format each value with ``sig`` significant digits)
    where the typical value is tiny or huge."""
    vals = _finite_floats(values)
    if all(v.is_integer() for v in vals):
        return 0
    mags = sorted(abs(v) for v in vals if v != 0)
    if not mags:
        return 0
    typical = mags[len(mags) // 2]
    if typical < 1e-3 or typical >= 1e9:
        return None
    return max(0, min(8, sig - 1 - math.floor(math.log10(typical))))


def _fmt_float(v: float, decimals: int | None, sig: int, grouping: bool) -> str:
    if math.isnan(v):
        raise ValueError("NaN reaches _fmt_float")
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if decimals is None:
        s = f"{v:.{sig}g}"
    else:
        r = round(v, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0: never "-0.000"
        s = f"{r:,.{decimals}f}" if grouping else f"{r:.{decimals}f}"
    if re.fullmatch(r"-0(\.0*)?(e[+-]?\d+)?", s):
        s = s[1:]
    return s


def format_column(values, spec=None, sig: int = 3, na: str = "") -> tuple[list[str], bool]:
    """The cells of one column as text, and whether the column is numeric (right-aligned).

    ``spec``: None (automatic: integers as integers, with thousands separators where the column
    reaches 10000; floats to ``sig`` significant digits of the column's median nonzero magnitude,
    as a fixed number of decimals for the whole column), an int (that many decimals), a format
    spec string (``".1%"``, ``"{:.2e}"``) or a callable (value -> text). NaN/None become ``na``;
    booleans "yes"/"no"; anything else ``str``."""
    import numpy as np
    import pandas as pd

    vals = list(values)
    present = [v for v in vals if not _is_na(v)]
    is_bool = bool(present) and all(isinstance(v, (bool, np.bool_)) for v in present)
    is_num = bool(present) and not is_bool and all(
        isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in present)
    if is_bool:
        return [na if _is_na(v) else ("yes" if v else "no") for v in vals], False
    if not is_num:
        out = []
        for v in vals:
            if _is_na(v):
                out.append(na)
            elif callable(spec):
                out.append(str(spec(v)))
            elif isinstance(v, (bool, np.bool_)):
                out.append("yes" if v else "no")
            elif isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral):
                out.append(_fmt_float(float(v), _decimals_for([v], sig), sig, False) if math.isfinite(float(v))
                           else _fmt_float(float(v), 0, sig, False))
            elif isinstance(v, pd.Timestamp):
                out.append(v.isoformat())
            else:
                out.append(str(v))
        return out, False
    if callable(spec):
        return [na if _is_na(v) else str(spec(v)) for v in vals], True
    if isinstance(spec, str):
        fmt = spec.format if "{" in spec else (lambda v: format(v, spec))
        return [na if _is_na(v) else _strip_neg_zero(fmt(v)) for v in vals], True
    finite = _finite_floats(present)
    grouping = bool(finite) and max(abs(v) for v in finite) >= 10000
    if all(isinstance(v, numbers.Integral) for v in present):
        decimals = 0  # integers stay integers, whatever the digits asked
    elif spec is not None:
        decimals = int(spec)
    else:
        decimals = _decimals_for(present, sig)
    out = []
    for v in vals:
        if _is_na(v):
            out.append(na)
        elif isinstance(v, numbers.Integral) and decimals == 0:
            out.append(f"{int(v):,}" if grouping else str(int(v)))
        else:
            out.append(_fmt_float(float(v), decimals, sig, grouping))
    return out, True


def _strip_neg_zero(s: str) -> str:
    return s[1:] if re.fullmatch(r"-0(\.0*)?%?", s) else s


def _inline_markup(text: str) -> str:
    """Escaped text with **bold**, *italic* and `code` (a caption's markup: raw HTML is not MyST)."""
    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"(?<![*\w])\*([^*]+)\*(?![*\w])", r"<em>\1</em>", t)
    return t


class BookTable:
    """A formatted table (see :func:`show_table`): ``_repr_html_`` for notebooks and the book,
    ``__repr__`` (text/plain) as aligned text. ``header``, ``rows`` (text cells) and ``numeric``
    (per column) are what both renderings show."""

    def __init__(self, header: list[str], rows: list[list[str]], numeric: list[bool], caption: str | None,
                 label: str, span: tuple[int, str] | None, wide: bool, transposed: bool):
        self.header, self.rows, self.numeric = header, rows, numeric
        self.caption, self.label, self.span, self.wide, self.transposed = caption, label, span, wide, transposed

    def _says_table(self) -> bool:
        return self.caption is not None and re.match(r"table\b", self.caption.strip(), re.IGNORECASE) is not None

    @property
    def caption_text(self) -> str | None:
        """The caption as shown: "label: caption", or the caption alone if it says "Table ..." already."""
        if self.caption is None:
            return None
        return self.caption.strip() if self._says_table() else f"{self.label}: {self.caption.strip()}"

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.header)

    def to_html(self) -> str:
        cls = "aprbook-table aprbook-table-wide" if self.wide else "aprbook-table"
        style = ' style="overflow-x:auto;max-width:100%"' if self.wide else ""
        parts = [_CSS, f'<div class="{cls}"{style}>', "<table>"]
        if self.caption is not None:
            body = _inline_markup(self.caption.strip())
            if not self._says_table():
                body = f'<span class="aprbook-table-label">{html.escape(self.label)}:</span> {body}'
            if self.wide:
                body += (f' <span class="aprbook-scroll-hint">({len(self.header)} columns: scroll sideways to see '
                         "them all)</span>")
            parts.append(f"<caption>{body}</caption>")
        parts.append("<thead>")
        if self.span is not None:
            first, title = self.span
            span_th = f'<th class="aprbook-span" colspan="{len(self.header) - first}">{html.escape(title)}</th>'
            parts.append("<tr>" + "<th></th>" * first + span_th + "</tr>")
        parts.append("<tr>" + "".join(f'<th class="{"num" if n else "txt"}">{html.escape(h)}</th>'
                                      for h, n in zip(self.header, self.numeric)) + "</tr>")
        parts.append("</thead><tbody>")
        for row in self.rows:
            parts.append("<tr>" + "".join(f'<td class="{"num" if n else "txt"}">{html.escape(c)}</td>'
                                          for c, n in zip(row, self.numeric)) + "</tr>")
        parts.append("</tbody></table></div>")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_text(self) -> str:
        cols = list(zip(self.header, *self.rows)) if self.rows else [(h,) for h in self.header]
        widths = [max(len(c) for c in col) for col in cols]

        def line(cells):
            return "  ".join(c.rjust(w) if n else c.ljust(w)
                             for c, w, n in zip(cells, widths, self.numeric)).rstrip()

        out = []
        if self.caption_text is not None:
            out.append(self.caption_text)
        if self.span is not None:
            first, title = self.span
            lead = sum(widths[:first]) + 2 * first
            out.append(" " * lead + title)
        out.append(line(self.header))
        out.append("  ".join("-" * w for w in widths))
        out.extend(line(r) for r in self.rows)
        return "\n".join(out)

    def __repr__(self) -> str:
        return self.to_text()

    def __str__(self) -> str:
        return self.to_text()


def show_table(df, caption: str | None = None, *, label: str = "Table", digits=None, sig: int = 3,
               wide: str = "scroll", max_columns: int = MAX_COLUMNS, na: str = "", index="auto",
               columns: dict | None = None) -> BookTable:
    """``df`` formatted for the page (returns a :class:`BookTable`; a cell's last expression, or
    ``display(show_table(...))``, shows it; ``glue(name, show_table(...))`` stores it for
    ``{glue:}`name``` in the text).

    - ``caption``: shown above the table as "``label``: caption" (``label`` defaults to "Table";
      give "Table 4.4 (ours)" for a numbered one); a caption that starts with "Table" is shown as
      it is. ``**bold**``, ``*italic*`` and backticks work in it.
    - ``digits``: None (each column rounded to ``sig`` significant digits of its median nonzero
      magnitude; whole numbers as integers), an int (decimals of every non-integer float column),
      or a dict column -> int (decimals) | format spec (``".1%"``) | callable, the other columns
      automatic.
    - ``wide``: for more than ``max_columns`` columns, ``"scroll"`` (the default: a sideways-
      scrollable block, on purpose, with a hint in the caption), ``"transpose"`` (columns become
      rows; the first column's values become the header) or ``"auto"`` (transpose when that gives
      at most ``max_columns`` columns, scroll otherwise). ``"transpose"`` also works on narrow tables.
    - ``na``: the text of a missing value ("" by default; "–" to make absence explicit).
    - ``index``: "auto" drops an unnamed integer index (row numbers, filtered or not) and keeps any
      other (named, labelled, MultiIndex) as leading columns; True keeps it, False drops it.
    - ``columns``: rename columns for display (old -> new), after the index became columns.
    Every row and column is shown: nothing is cut with "...".
    """
    import pandas as pd

    if isinstance(df, pd.Series):
        df = df.to_frame()
    if wide not in ("scroll", "transpose", "auto"):
        raise ValueError(f"wide={wide!r}: must be 'scroll', 'transpose' or 'auto'")
    if isinstance(index, str) and index != "auto":
        raise ValueError(f"index={index!r}: must be 'auto', True or False")
    span = None
    col_title = None if isinstance(df.columns, pd.MultiIndex) else df.columns.name
    if index == "auto":
        keep = (isinstance(df.index, pd.MultiIndex) or any(n is not None for n in df.index.names)
                or not pd.api.types.is_integer_dtype(df.index.dtype))
    else:
        keep = bool(index)
    n_lead = df.index.nlevels if keep else 0
    if keep:
        names = [("" if n is None else n) for n in df.index.names]
        frame = df.copy()
        frame.index = frame.index.set_names(names)
        frame = frame.reset_index(allow_duplicates=True)
    else:
        frame = df.reset_index(drop=True)
    header = [_header(c) for c in frame.columns]
    if columns:
        rename = {_header(k): str(v) for k, v in columns.items()}
        header = [rename.get(h, h) for h in header]
    if col_title is not None and not _is_na(col_title) and str(col_title) and n_lead < len(header):
        span = (n_lead, str(col_title))
    specs = digits if isinstance(digits, dict) else {}
    spec_by_header = {_header(k): v for k, v in specs.items()}
    cells, numeric = [], []
    for j, (orig, h) in enumerate(zip(frame.columns, header)):
        spec = spec_by_header.get(_header(orig), spec_by_header.get(h))
        if spec is None and isinstance(digits, numbers.Integral) and not isinstance(digits, bool):
            spec = _IntDigits(int(digits))
        col = frame.iloc[:, j].tolist()
        if isinstance(spec, _IntDigits):
            vals = [v for v in col if not _is_na(v)]
            whole = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))
                        and float(v).is_integer() for v in vals)
            spec = None if whole else spec.n
        text, is_num = format_column(col, spec, sig=sig, na=na)
        cells.append(text)
        numeric.append(is_num)
    rows = [list(r) for r in zip(*cells)] if cells else []
    transposed = False
    if wide == "transpose" or (wide == "auto" and len(header) > max_columns and len(rows) + 1 <= max_columns):
        first = header[0]
        new_header = [first] + [r[0] for r in rows]
        new_rows = [[h] + [r[j] for r in rows] for j, h in enumerate(header) if j > 0]
        row_numeric = [numeric[j] for j in range(1, len(header))]
        # a transposed column mixes the original columns: right-align it if most of its cells are numbers
        col_numeric = [False] + [sum(row_numeric) > len(row_numeric) / 2] * len(rows)
        header, rows, numeric, span, transposed = new_header, new_rows, col_numeric, None, True
    is_wide = len(header) > max_columns
    return BookTable(header, rows, numeric, caption, label, span, is_wide, transposed)


class _IntDigits:
    def __init__(self, n: int):
        self.n = n


class Collapsed:
    """A long table (or anything with ``_repr_html_``) shown collapsed under a one-line summary the
    reader clicks to open (an HTML ``details`` element): detail that would push a chapter's answer
    off the first screens stays one click away. Text repr: the summary, then the object's."""

    def __init__(self, obj, summary: str):
        if not hasattr(obj, "_repr_html_"):
            raise TypeError(f"collapsed() needs an object with _repr_html_ (e.g. show_table's), got {type(obj).__name__}")
        self.obj, self.summary = obj, summary

    def _repr_html_(self) -> str:
        return (f'<details class="aprbook-collapsed"><summary>{html.escape(self.summary)}</summary>'
                f"{self.obj._repr_html_()}</details>")

    def __repr__(self) -> str:
        return f"{self.summary} (collapsed)\n{self.obj!r}"


def collapsed(obj, summary: str) -> Collapsed:
    """``obj`` (e.g. :func:`show_table`'s table) collapsed under ``summary`` (:class:`Collapsed`)."""
    return Collapsed(obj, summary)


# --- figures -----------------------------------------------------------------------------------------

#: width of the book's figures (inches): with SAVE_DPI a 975-pixel PNG, scaled down to the content column
FIG_WIDTH_IN = 6.5
#: the dpi of :meth:`aprbook.provenance.ResultStore.save_figure` (and of figures shown in the notebook)
SAVE_DPI = 150
#: the widest the content column of Jupyter Book 1.x's theme (sphinx-book-theme 1.x on pydata-sphinx-
#: theme) gets, in CSS pixels: page at most 88rem, primary sidebar 25%, secondary 17rem, article padding
#: 2 x 2rem: 88 * 0.75 - 17 - 4 = 45rem = 720 px (624 px in a 1280-px window). Images wider than the
#: column are scaled down to it (img {max-width: 100%}).
CONTENT_WIDTH_PX = 720
#: body text size of the book (CSS px) and the smallest text a figure may show on the page
BODY_PX = 16
MIN_TEXT_PX = 10

#: Okabe & Ito's colour-blind-safe palette (Okabe and Ito 2008), most distinct first; yellow last but one
#: (weak on white)
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#56B4E9", "#CC79A7", "#F0E442", "#000000"]

#: font sizes in points: at FIG_WIDTH_IN and SAVE_DPI shown CONTENT_WIDTH_PX wide, one point is
#: 150 / 72 * 720 / 975 = 1.54 CSS px (a little less when the saved PNG's tight bounding box is wider
#: than the figure), so labels (11 pt) read at about 16-17 px (body size) and tick labels and legends
#: (10 pt) at about 15 px; in a 1280-px window (624-px column) still 13 px and more
BOOK_RC = {
    "figure.figsize": (FIG_WIDTH_IN, 0.6 * FIG_WIDTH_IN),
    "figure.dpi": SAVE_DPI,
    "savefig.dpi": SAVE_DPI,
    "savefig.pad_inches": 0.05,
    "figure.constrained_layout.use": True,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "font.size": 11,
    "axes.labelsize": 11,
    "axes.titlesize": 12,
    "figure.titlesize": 12.5,
    "figure.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10.5,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.linewidth": 0.5,
    "grid.alpha": 0.4,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "image.cmap": "viridis",
    "pdf.fonttype": 42,
}


def _rc() -> dict:
    from cycler import cycler
    return {**BOOK_RC, "axes.prop_cycle": cycler(color=OKABE_ITO)}


class _BookStyle:
    """Returned by :func:`book_style`: the style is on from the call, and stays on when the object is
    dropped (``book_style()`` as a statement); ``with`` (or :meth:`restore`) restores the previous
    settings. (Holding a ``matplotlib.rc_context`` here would not do: its generator, collected with
    a discarded object, restores the previous settings at once.)"""

    def __init__(self, overrides: dict):
        import matplotlib as mpl
        saved = dict(mpl.rcParams.copy())
        saved.pop("backend", None)  # as rc_context: restoring must not switch (or resolve) the backend
        self._saved = saved
        mpl.rcParams.update({**_rc(), **overrides})
        self._open = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False

    def restore(self) -> None:
        if self._open:
            import matplotlib as mpl
            self._open = False
            dict.update(mpl.rcParams, self._saved)


def book_style(**overrides) -> _BookStyle:
    """Set the book's matplotlib style now (for the rest of the notebook), or for a ``with`` block::

        book_style()                     # after `import matplotlib.pyplot as plt`
        with book_style(**{"axes.grid": False}):
            ...

    Figures are FIG_WIDTH_IN (6.5 in) wide by default and drawn and saved at SAVE_DPI (150), so the
    figure shown in the notebook (and hence on the book's page) is the PNG that ``save_figure``
    writes; constrained layout (do not call ``fig.tight_layout()``: it warns and undoes it); fonts
    that read at body size on the page; the Okabe-Ito palette (seaborn's default palette follows
    it); no legend frame. Keyword arguments override rcParams (``**{"axes.grid": False}``)."""
    return _BookStyle(overrides)


def book_figsize(aspect: float = 0.6, width: float = FIG_WIDTH_IN) -> tuple[float, float]:
    """(width, height) in inches of a book figure whose height is ``aspect`` times its width."""
    return (width, aspect * width)


def small_multiples(n: int, ncols: int | None = None, *, aspect: float = 0.75, width: float = FIG_WIDTH_IN,
                    sharex: bool = False, sharey: bool = False, **subplot_kw):
    """A grid of ``n`` panels, ``ncols`` to a row (default: up to 3), the book's width, each panel
    ``aspect`` times as high as wide. Returns ``(fig, axes)``, ``axes`` a flat list of the ``n``
    Axes (unused grid cells removed)."""
    import matplotlib.pyplot as plt

    if n < 1:
        raise ValueError(f"n={n}: at least one panel")
    ncols = min(n, 3) if ncols is None else max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    height = nrows * (width / ncols) * aspect
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), sharex=sharex, sharey=sharey,
                             squeeze=False, **subplot_kw)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        fig.delaxes(ax)
    return fig, flat[:n]


def legend_outside(target, where: str = "right", **kwargs):
    """Move the legend of ``target`` (an Axes, or a Figure: one legend of all its axes' entries,
    each label once) out of the data area: ``where`` "right" (beside the axes / figure) or "bottom"
    (under the figure, entries side by side). An existing legend (seaborn's too) is replaced, its
    entries and title kept. Needs constrained layout (book_style sets it; a figure without a
    layout engine is switched to it), which makes room for the legend inside the figure's width, so
    the PNG keeps the book's width and its text its size. Returns the Legend; ``kwargs`` go to
    ``legend``."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    if where not in ("right", "bottom"):
        raise ValueError(f"where={where!r}: must be 'right' or 'bottom'")
    axes = target.axes if isinstance(target, Figure) else [target]
    fig = target if isinstance(target, Figure) else target.figure
    handles, labels, title = [], [], kwargs.pop("title", None)
    for ax in axes:
        hs, ls = [], []
        old = ax.get_legend()
        if old is not None:  # its entries first (seaborn's handles are not among the axes' artists)
            hs = list(getattr(old, "legend_handles", None) or getattr(old, "legendHandles", []))
            ls = [t.get_text() for t in old.get_texts()]
            if title is None and old.get_title().get_text():
                title = old.get_title().get_text()
            old.remove()
        more_h, more_l = ax.get_legend_handles_labels()  # then what was plotted with a label since
        hs, ls = hs + list(more_h), ls + list(more_l)
        for h, lab in zip(hs, ls):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    engine = fig.get_layout_engine()
    if engine is None or type(engine).__name__ != "ConstrainedLayoutEngine":
        fig.set_layout_engine("constrained")
    if title is not None:
        kwargs["title"] = title
    if where == "bottom":
        kwargs.setdefault("ncols", max(1, min(len(labels), 4)))
        return fig.legend(handles, labels, loc="outside lower center", **kwargs)
    if isinstance(target, Axes):
        kwargs.setdefault("borderaxespad", 0.0)
        return target.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), **kwargs)
    return fig.legend(handles, labels, loc="outside right upper", **kwargs)


def displayed_text_px(fig, png_width_px: int, dpi: float = SAVE_DPI,
                      content_width_px: float = CONTENT_WIDTH_PX) -> list[tuple[str, float]]:
    """(text, size in CSS pixels on the page) of every visible, non-empty text of ``fig`` (tick
    labels, axis labels, titles, legends, annotations), for its PNG saved at ``dpi`` that is
    ``png_width_px`` wide and shown at most ``content_width_px`` wide (the page scales a wider image
    down, never a narrower one up): points x dpi / 72 x min(1, content width / PNG width). Draws the
    figure first (so that tick labels exist)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    scale = min(1.0, content_width_px / png_width_px)
    out = []
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip():
            out.append((t.get_text(), t.get_fontsize() * dpi / 72 * scale))
    return out
