// Bindings of the APRNet operation kernels: validate shapes and indices, release the GIL, call aprops.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "apr_core3d.hpp"
#include "apr_ops.hpp"
#include "apr_tables.hpp"
#include "binding_utils.hpp"

namespace py = pybind11;
using aprcore::CellView;
using aprcore::Structure;

using bindutil::carray;
using bindutil::require;

namespace {

void require_valid(int64_t bad, const char* what) {
    require(bad == 0, std::string(what) + ": " + std::to_string(bad) + " index(es) out of range");
}


void require_1d(const py::array& a, int64_t n, const char* name) {
    require(a.ndim() == 1 && (n < 0 || a.shape(0) == n),
            std::string(name) + " must be 1D" + (n >= 0 ? " of length " + std::to_string(n) : ""));
}

// References to APR tables (n_b, K) int32 with their row maps (B, 4) = (n, t, particle base, tree base).
std::vector<aprops::TableRef> table_refs(const std::vector<carray<int32_t>>& tables, const carray<int64_t>& maps) {
    require(maps.ndim() == 2 && maps.shape(1) == 4 && maps.shape(0) == static_cast<py::ssize_t>(tables.size()),
            "maps must be (B, 4) with one row per table");
    std::vector<aprops::TableRef> refs(tables.size());
    const int64_t K = tables.empty() ? 1 : tables[0].shape(1);
    for (size_t b = 0; b < tables.size(); ++b) {
        require(tables[b].ndim() == 2 && tables[b].shape(1) == K, "tables must be 2D with the same number of columns");
        const int64_t* m = maps.data() + 4 * b;
        require(m[0] >= 0 && m[1] >= 0 && m[2] >= 0 && m[3] >= 0, "maps must be >= 0");
        refs[b] = aprops::TableRef{tables[b].data(), tables[b].shape(0), m[0], m[1], m[2], m[3]};
    }
    return refs;
}

// Rows of the segments (S, 3) = (table, start, stop) together (a bad segment counts 0 here; the
// kernels report it).
int64_t segment_rows(const carray<int64_t>& segs) {
    require(segs.ndim() == 2 && segs.shape(1) == 3, "segs must be (S, 3): table, start, stop");
    int64_t n = 0;
    for (int64_t s = 0; s < segs.shape(0); ++s) n += std::max<int64_t>(segs.at(s, 2) - segs.at(s, 1), 0);
    return n;
}

// A view of a sorted structure's arrays, checked before any use, in 2D (z and tree_z null, Z = 1) or 3D:
// equal lengths, at least one particle, levels in the image's range, every cell inside its level's grid,
// particles and tree nodes each sorted by (level, [z,] y, x) without repeats. The one home of these
// checks for the tables built on a SortedView.
aprtables::SortedView sorted_view(const carray<int8_t>& level, const carray<int32_t>* z, const carray<int32_t>& y,
                                  const carray<int32_t>& x, const carray<int8_t>& tree_level,
                                  const carray<int32_t>* tree_z, const carray<int32_t>& tree_y,
                                  const carray<int32_t>& tree_x, int64_t Z, int64_t Y, int64_t X) {
    const bool is3d = z != nullptr;
    require(is3d == (tree_z != nullptr), "z and tree_z must both be given (3D) or both be absent (2D)");
    require(Z > 0 && Y > 0 && X > 0, is3d ? "volume depth, height and width must be positive"
                                          : "image height and width must be positive");
    require(Z < (int64_t(1) << 30) && Y < (int64_t(1) << 30) && X < (int64_t(1) << 30),
            is3d ? "volume too large" : "image too large");
    require(is3d || Z == 1, "a 2D structure has one plane (Z = 1)");
    require_1d(level, -1, "level");
    const int64_t N = level.shape(0);
    require(N > 0, "an APR needs at least one particle");
    if (is3d) require_1d(*z, N, "z");
    require_1d(y, N, "y");
    require_1d(x, N, "x");
    require_1d(tree_level, -1, "tree_level");
    const int64_t T = tree_level.shape(0);
    if (is3d) require_1d(*tree_z, T, "tree_z");
    require_1d(tree_y, T, "tree_y");
    require_1d(tree_x, T, "tree_x");
    require(N + T < (int64_t(1) << 31) - 1, "an APR's value rows (particles + tree nodes + 1) must fit in int32");
    aprtables::SortedView v;
    if (is3d) {
        const aprcore::Geometry3 g = aprcore::make_geometry3(Z, Y, X);
        v.level_min = g.level_min;
        v.level_max = g.level_max;
    } else {
        const aprcore::Geometry g = aprcore::make_geometry(Y, X);
        v.level_min = g.level_min;
        v.level_max = g.level_max;
    }
    v.Z = Z;
    v.Y = Y;
    v.X = X;
    v.N = N;
    v.T = T;
    v.level = level.data();
    v.z = is3d ? z->data() : nullptr;
    v.y = y.data();
    v.x = x.data();
    v.tree_level = tree_level.data();
    v.tree_z = is3d ? tree_z->data() : nullptr;
    v.tree_y = tree_y.data();
    v.tree_x = tree_x.data();
    const std::string order = is3d ? "(level, z, y, x)" : "(level, y, x)";
    const char* where = is3d ? " lies outside the volume at its level" : " lies outside the image at its level";
    auto check = [&](const int8_t* lv, const int32_t* cz, const int32_t* cy, const int32_t* cx, int64_t n, int top,
                     const char* what) {
        auto zi = [cz](int64_t i) { return cz ? cz[i] : 0; };
        for (int64_t i = 0; i < n; ++i) {
            const int l = lv[i];
            require(l >= v.level_min && l <= top, std::string(what) + " " + std::to_string(i) + " has level " +
                                                      std::to_string(l) + " outside [" + std::to_string(v.level_min) +
                                                      ", " + std::to_string(top) + "]");
            require(zi(i) >= 0 && cy[i] >= 0 && cx[i] >= 0 && zi(i) < v.nz(l) && cy[i] < v.ny(l) && cx[i] < v.nx(l),
                    std::string(what) + " " + std::to_string(i) + where);
            if (i > 0) {
                const auto prev = std::make_tuple(lv[i - 1], zi(i - 1), cy[i - 1], cx[i - 1]);
                require(prev < std::make_tuple(lv[i], zi(i), cy[i], cx[i]),
                        std::string(what) + "s must be sorted by " + order + " without repeats (at " +
                            std::to_string(i) + ")");
            }
        }
    };
    check(v.level, v.z, v.y, v.x, N, v.level_max, "particle");
    check(v.tree_level, v.tree_z, v.tree_y, v.tree_x, T, v.level_max - 1, "tree node");
    return v;
}

// A Structure (a copy) from the arrays of a 2D APR: the cells checked by sorted_view, then the parent
// indices.
Structure structure_from_arrays(const carray<int8_t>& level, const carray<int32_t>& y, const carray<int32_t>& x,
                                const carray<int64_t>& parent, const carray<int8_t>& tree_level,
                                const carray<int32_t>& tree_y, const carray<int32_t>& tree_x,
                                const carray<int64_t>& tree_parent, int64_t H, int64_t W) {
    const aprtables::SortedView v = sorted_view(level, nullptr, y, x, tree_level, nullptr, tree_y, tree_x, 1, H, W);
    const int64_t N = v.N, T = v.T;
    require_1d(parent, N, "parent");
    require_1d(tree_parent, T, "tree_parent");
    for (int64_t i = 0; i < N; ++i) require(parent.data()[i] >= -1 && parent.data()[i] < T, "parent index out of range");
    for (int64_t i = 0; i < T; ++i)
        require(tree_parent.data()[i] >= -1 && tree_parent.data()[i] < T, "tree_parent out of range");
    Structure s;
    s.g = aprcore::make_geometry(H, W);
    s.level.assign(level.data(), level.data() + N);
    s.y.assign(y.data(), y.data() + N);
    s.x.assign(x.data(), x.data() + N);
    s.parent.assign(parent.data(), parent.data() + N);
    s.tree_level.assign(tree_level.data(), tree_level.data() + T);
    s.tree_y.assign(tree_y.data(), tree_y.data() + T);
    s.tree_x.assign(tree_x.data(), tree_x.data() + T);
    s.tree_parent.assign(tree_parent.data(), tree_parent.data() + T);
    return s;
}

// The neighbourhood table (N, k^d) int32 of a checked view (sorted_view), the GIL released while it is built.
carray<int32_t> neighbour_table_of(const aprtables::SortedView& v, int k) {
    require(k >= 1 && k % 2 == 1, "kernel size must be a positive odd integer, got " + std::to_string(k));
    require(k <= 255, "kernel size must be <= 255");
    const int64_t K = v.z ? int64_t(k) * k * k : int64_t(k) * k;
    carray<int32_t> table({v.N, K});
    int64_t missing;
    {
        py::gil_scoped_release release;
        missing = aprtables::neighbour_table(v, k, table.mutable_data());
    }
    require(missing == 0, std::string("the particle cells do not cover the ") + (v.z ? "volume" : "image") +
                              " (a neighbour has no covering particle)");
    return table;
}

}  // namespace


// Kernels on feature values, registered for float32 and float64 arrays (pybind11 picks the
// overload whose dtype matches; no conversion happens).
template <typename F>
void bind_data_ops(py::module_& m) {
    m.def("tree_fill",
          [](carray<F>& vals, int64_t N, int64_t T, const carray<int64_t>& order, const carray<int64_t>& offsets,
             const carray<int32_t>& children, const carray<int32_t>& counts, bool transpose) {
              require(vals.ndim() == 2 && vals.shape(0) >= N + T && N >= 0 && T >= 0,
                      "vals must be (>= N + T, C)");
              require_1d(order, T, "order");
              require(offsets.ndim() == 1 && offsets.shape(0) >= 1, "offsets must be 1D");
              require(children.ndim() == 2 && children.shape(0) == T && (children.shape(1) == 4 || children.shape(1) == 8),
                      "children must be (T, 4) (2D) or (T, 8) (3D)");
              require_1d(counts, T, "counts");
              const int levels = static_cast<int>(offsets.shape(0) - 1);
              const int64_t* off = offsets.data();
              require(off[0] == 0 && off[levels] == T, "offsets must start at 0 and end at T");
              for (int l = 0; l < levels; ++l) require(off[l] <= off[l + 1], "offsets must be non-decreasing");
              int64_t bad;
              {
                  py::gil_scoped_release release;
                  bad = transpose ? aprops::tree_unfill(vals.mutable_data(), N, T, vals.shape(1), order.data(), off, levels,
                                                        children.data(), children.shape(1), counts.data())
                                  : aprops::tree_fill(vals.mutable_data(), N, T, vals.shape(1), order.data(), off, levels,
                                                      children.data(), children.shape(1), counts.data());
              }
              require_valid(bad, "tree_fill");
          },
          py::arg("vals"), py::arg("N"), py::arg("T"), py::arg("order"), py::arg("offsets"), py::arg("children"),
          py::arg("counts"), py::arg("transpose") = false,
          "In place: tree rows of vals <- means of children (transpose: tree gradients -> children).");

    m.def("gather_rows",
          [](const carray<F>& vals, const carray<int32_t>& table) {
              require(vals.ndim() == 2, "vals must be (n_vals, C)");
              require(table.ndim() == 2, "table must be (n, K)");
              const int64_t n = table.shape(0), K = table.shape(1), C = vals.shape(1);
              carray<F> cols({n, K * C});
              int64_t bad;
              {
                  py::gil_scoped_release release;
                  bad = aprops::gather_rows(vals.data(), vals.shape(0), C, table.data(), K, n, cols.mutable_data());
              }
              require_valid(bad, "gather_rows");
              return cols;
          },
          py::arg("vals"), py::arg("table"), "cols (n, K*C): cols[i, j*C + c] = vals[table[i, j], c].");

    m.def("scatter_add_rows",
          [](const carray<F>& grad_cols, const carray<int32_t>& table, carray<F>& grad_vals) {
              require(table.ndim() == 2, "table must be (n, K)");
              require(grad_vals.ndim() == 2, "grad_vals must be (n_vals, C)");
              const int64_t n = table.shape(0), K = table.shape(1), C = grad_vals.shape(1);
              require(grad_cols.ndim() == 2 && grad_cols.shape(0) == n && grad_cols.shape(1) == K * C,
                      "grad_cols must be (n, K*C) for an (n, K) table and C channels");
              int64_t bad;
              {
                  py::gil_scoped_release release;
                  bad = aprops::scatter_add_rows(grad_cols.data(), C, table.data(), K, n, grad_vals.shape(0),
                                                 grad_vals.mutable_data());
              }
              require_valid(bad, "scatter_add_rows");
          },
          py::arg("grad_cols"), py::arg("table"), py::arg("grad_vals"),
          "In place: grad_vals[table[i, j]] += grad_cols[i, j*C:(j+1)*C] (transpose of gather_rows).");

    m.def("gather_segments",
          [](const carray<F>& vals, const std::vector<carray<int32_t>>& tables, const carray<int64_t>& maps,
             const carray<int64_t>& segs, int64_t zero) {
              require(vals.ndim() == 2, "vals must be (n_vals, C)");
              const std::vector<aprops::TableRef> refs = table_refs(tables, maps);
              const int64_t K = tables.empty() ? 1 : tables[0].shape(1), C = vals.shape(1);
              const int64_t n = segment_rows(segs);
              carray<F> cols({n, K * C});
              int64_t bad;
              {
                  py::gil_scoped_release release;
                  bad = aprops::gather_segments(vals.data(), vals.shape(0), C, K, refs.data(), refs.size(), segs.data(),
                                                segs.shape(0), zero, cols.mutable_data());
              }
              require_valid(bad, "gather_segments");
              return cols;
          },
          py::arg("vals"), py::arg("tables"), py::arg("maps"), py::arg("segs"), py::arg("zero"),
          "cols (n, K*C) gathered through rows [start, stop) of APR tables (segs (S, 3)), translated to "
          "batch rows by maps (B, 4) = (n, t, particle base, tree base).");

    m.def("scatter_add_segments",
          [](const carray<F>& grad_cols, const std::vector<carray<int32_t>>& tables, const carray<int64_t>& maps,
             const carray<int64_t>& segs, int64_t zero, carray<F>& grad_vals) {
              require(grad_vals.ndim() == 2, "grad_vals must be (n_vals, C)");
              const std::vector<aprops::TableRef> refs = table_refs(tables, maps);
              const int64_t K = tables.empty() ? 1 : tables[0].shape(1), C = grad_vals.shape(1);
              const int64_t n = segment_rows(segs);
              require(grad_cols.ndim() == 2 && grad_cols.shape(0) == n && grad_cols.shape(1) == K * C,
                      "grad_cols must be (n, K*C) for the segments' n rows and C channels");
              int64_t bad;
              {
                  py::gil_scoped_release release;
                  bad = aprops::scatter_add_segments(grad_cols.data(), C, K, refs.data(), refs.size(), segs.data(),
                                                     segs.shape(0), zero, grad_vals.shape(0), grad_vals.mutable_data());
              }
              require_valid(bad, "scatter_add_segments");
          },
          py::arg("grad_cols"), py::arg("tables"), py::arg("maps"), py::arg("segs"), py::arg("zero"),
          py::arg("grad_vals"), "In place: the transpose of gather_segments.");

    m.def("pool_forward",
          [](const carray<F>& x, const carray<int32_t>& table) {
              require(x.ndim() == 2, "x must be (N, C)");
              require(table.ndim() == 2 && (table.shape(1) == 4 || table.shape(1) == 8),
                      "pool table must be (M, 4) (2D) or (M, 8) (3D)");
              const int64_t M = table.shape(0), C = x.shape(1);
              carray<F> out({M, C});
              carray<int64_t> argmax({M, C});
              int64_t bad;
              {
                  py::gil_scoped_release release;
                  bad = aprops::pool_forward(x.data(), x.shape(0), C, table.data(), table.shape(1), M, out.mutable_data(),
                                             argmax.mutable_data());
              }
              require_valid(bad, "pool_forward");
              return py::make_tuple(out, argmax);
          },
          py::arg("x"), py::arg("table"), "Max pooling over (M, 4) or (M, 8) input rows -> (out (M, C), argmax (M, C)).");

    m.def("pool_backward",
          [](const carray<F>& grad_out, const carray<int64_t>& argmax, int64_t n_x) {
              require(grad_out.ndim() == 2 && argmax.ndim() == 2 && grad_out.shape(0) == argmax.shape(0) &&
                          grad_out.shape(1) == argmax.shape(1),
                      "grad_out and argmax must both be (M, C)");
              require(n_x >= 0, "n_x must be >= 0");
              const int64_t M = grad_out.shape(0), C = grad_out.shape(1);
              carray<F> grad_x({n_x, C});
              std::fill(grad_x.mutable_data(), grad_x.mutable_data() + n_x * C, F(0));
              int64_t bad;
              {
                  py::gil_scoped_release release;
                  bad = aprops::pool_backward(grad_out.data(), C, argmax.data(), M, n_x, grad_x.mutable_data());
              }
              require_valid(bad, "pool_backward");
              return grad_x;
          },
          py::arg("grad_out"), py::arg("argmax"), py::arg("n_x"), "Gradient (n_x, C) of pool_forward's input.");
}

void bind_ops(py::module_& m) {
    m.def("parallel_threshold", &aprops::parallel_threshold,
          "Work (entries x channels) below which the APR op and table kernels run on one thread.");
    m.def("set_parallel_threshold",
          [](int64_t work) {
              require(work >= 0, "the parallel threshold must be >= 0");
              aprops::set_parallel_threshold(work);
          },
          py::arg("work"), "Set the work below which the APR op and table kernels run on one thread.");
    m.def("structure_from_cells",
          [](const carray<int8_t>& level, const carray<int32_t>& y, const carray<int32_t>& x, int64_t H, int64_t W) {
              require(H > 0 && W > 0, "image height and width must be positive");
              require_1d(level, -1, "level");
              require_1d(y, level.shape(0), "y");
              require_1d(x, level.shape(0), "x");
              require(level.shape(0) > 0, "an APR needs at least one particle");
              CellView v{aprcore::make_geometry(H, W), level.data(), y.data(), x.data(), level.shape(0)};
              Structure s;
              std::string error;
              bool ok;
              {
                  py::gil_scoped_release release;
                  ok = aprtables::structure_from_cells(v, s, error);
              }
              require(ok, "not a valid APR: " + error);
              return bindutil::structure_to_dict(std::move(s));
          },
          py::arg("level"), py::arg("y"), py::arg("x"), py::arg("height"), py::arg("width"),
          "Sorted structure (dict of arrays) of particle cells that partition an HxW image (O(n log n), no "
          "dense map).");

#define APR_STRUCTURE_ARGS                                                                                     \
    const carray<int8_t>&level, const carray<int32_t>&y, const carray<int32_t>&x, const carray<int64_t>&parent, \
        const carray<int8_t>&tree_level, const carray<int32_t>&tree_y, const carray<int32_t>&tree_x,           \
        const carray<int64_t>&tree_parent, int64_t H, int64_t W
#define APR_STRUCTURE_NAMES                                                                                    \
    py::arg("level"), py::arg("y"), py::arg("x"), py::arg("parent"), py::arg("tree_level"), py::arg("tree_y"),  \
        py::arg("tree_x"), py::arg("tree_parent"), py::arg("height"), py::arg("width")

    m.def("child_table",
          [](APR_STRUCTURE_ARGS) {
              const Structure s = structure_from_arrays(level, y, x, parent, tree_level, tree_y, tree_x, tree_parent, H, W);
              const int64_t T = tree_level.shape(0);
              std::vector<int64_t> counts_check(T, 0);
              for (int64_t p : s.parent) if (p >= 0) ++counts_check[p];
              for (int64_t p : s.tree_parent) if (p >= 0) ++counts_check[p];
              for (int64_t t = 0; t < T; ++t)
                  require(counts_check[t] >= 1 && counts_check[t] <= 4, "every tree node needs 1 to 4 children");
              carray<int32_t> children({T, int64_t(4)});
              carray<int32_t> counts({T});
              aprtables::child_table(s, children.mutable_data(), counts.mutable_data());
              return py::make_tuple(children, counts);
          },
          APR_STRUCTURE_NAMES,
          "Children (T, 4) int32 of each tree node as rows of the value array (-1 padded) and their counts (T).");

    m.def("neighbour_table",
          [](APR_STRUCTURE_ARGS, int k) {
              // the table reads no parent indices: only their lengths are checked
              require_1d(parent, level.shape(0), "parent");
              require_1d(tree_parent, tree_level.shape(0), "tree_parent");
              return neighbour_table_of(sorted_view(level, nullptr, y, x, tree_level, nullptr, tree_y, tree_x, 1, H, W), k);
          },
          APR_STRUCTURE_NAMES, py::arg("k"),
          "Neighbourhood table (N, k*k) int32 into the value array [particles; tree; zero] (O(N k^2 log), no "
          "dense map).");

    m.def("neighbour_table3d",
          [](const carray<int8_t>& level, const carray<int32_t>& z, const carray<int32_t>& y, const carray<int32_t>& x,
             const carray<int8_t>& tree_level, const carray<int32_t>& tree_z, const carray<int32_t>& tree_y,
             const carray<int32_t>& tree_x, int64_t Z, int64_t Y, int64_t X, int k) {
              return neighbour_table_of(sorted_view(level, &z, y, x, tree_level, &tree_z, tree_y, tree_x, Z, Y, X), k);
          },
          py::arg("level"), py::arg("z"), py::arg("y"), py::arg("x"), py::arg("tree_level"), py::arg("tree_z"),
          py::arg("tree_y"), py::arg("tree_x"), py::arg("depth"), py::arg("height"), py::arg("width"), py::arg("k"),
          "Neighbourhood table (N, k^3) int32 of a sorted 3D APR structure into the value array [particles; tree; "
          "zero], offsets row-major over (dz, dy, dx) (the 2D kernel's code path with a z axis; O(N k^3 log), no "
          "dense map).");

    m.def("pool_structure",
          [](APR_STRUCTURE_ARGS) {
              const Structure s = structure_from_arrays(level, y, x, parent, tree_level, tree_y, tree_x, tree_parent, H, W);
              for (int64_t i = 0; i < static_cast<int64_t>(s.parent.size()); ++i)
                  require(s.level[i] == s.g.level_min || s.parent[i] >= 0, "a particle above level_min has no parent");
              Structure out;
              std::vector<int32_t> table;
              {
                  py::gil_scoped_release release;
                  aprtables::pool_structure(s, out, table);
              }
              const int64_t M = static_cast<int64_t>(out.y.size());
              auto tab = bindutil::to_numpy(std::move(table));
              return py::make_tuple(bindutil::structure_to_dict(std::move(out)), tab.reshape({M, int64_t(4)}));
          },
          APR_STRUCTURE_NAMES,
          "Max pooling of the finest level present: (pooled structure dict, (M, 4) int32 table of the input "
          "particle rows of each pooled particle, -1 padded), derived from the structure in O(N + T).");
#undef APR_STRUCTURE_ARGS
#undef APR_STRUCTURE_NAMES

    bind_data_ops<float>(m);
    bind_data_ops<double>(m);
}
