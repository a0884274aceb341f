// Thin pybind11 bindings: validate shapes, dtypes and bounds, release the GIL, call aprcore.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>

#include "apr_core.hpp"
#include "apr_core3d.hpp"
#include "binding_utils.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;
using namespace aprcore;

using bindutil::carray;
using bindutil::require;
using bindutil::structure_to_dict;

namespace {

// Non-finite pixels would make every max and comparison of the kernels below meaningless.
void check_finite(const carray<float>& img, const std::string& name) {
    const float* d = img.data();
    const int64_t n = img.size();
    for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(d[i]))
            throw py::value_error(name + " contains NaN or infinite values (first at flat index " +
                                  std::to_string(i) + ")");
}

void check_image(const carray<float>& img, const char* name) {
    require(img.ndim() == 2, std::string(name) + " must be 2D (H, W), got ndim=" + std::to_string(img.ndim()));
    require(img.shape(0) > 0 && img.shape(1) > 0, std::string(name) + " must not be empty");
    check_finite(img, name);
}

Params make_params(double rel_error, double grad_th, double Ip_th, double sigma_th, double sigma_th_max,
                   bool smooth, double b1, double b2, double norm, int bspline_k) {
    require(std::isfinite(rel_error) && rel_error > 0, "rel_error (E) must be a positive finite number");
    require(std::isfinite(grad_th) && std::isfinite(Ip_th), "grad_th and Ip_th must be finite");
    require(std::isfinite(sigma_th) && sigma_th >= 0, "sigma_th must be finite and >= 0");
    require(std::isfinite(sigma_th_max) && sigma_th_max >= 0, "sigma_th_max must be finite and >= 0");
    require(bspline_k >= 0 && bspline_k <= 100000, "bspline_k must be in [0, 100000]");
    require(std::isfinite(b1) && std::isfinite(b2) && std::isfinite(norm), "B-spline coefficients must be finite");
    Params p;
    p.rel_error = static_cast<float>(rel_error);
    p.grad_th = static_cast<float>(grad_th);
    p.Ip_th = static_cast<float>(Ip_th);
    p.sigma_th = static_cast<float>(sigma_th);
    p.sigma_th_max = static_cast<float>(sigma_th_max);
    p.smooth = smooth;
    p.b1 = b1;
    p.b2 = b2;
    p.norm = norm;
    p.bspline_k = bspline_k;
    return p;
}


CellView checked_view(const carray<int8_t>& level, const carray<int32_t>& y, const carray<int32_t>& x,
                      int64_t H, int64_t W) {
    require(H > 0 && W > 0, "image height and width must be positive");
    require(level.ndim() == 1 && y.ndim() == 1 && x.ndim() == 1, "level, y and x must be 1D");
    require(level.shape(0) == y.shape(0) && y.shape(0) == x.shape(0),
            "level, y and x must have the same length");
    CellView v;
    v.g = make_geometry(H, W);
    v.level = level.data();
    v.y = y.data();
    v.x = x.data();
    v.n = level.shape(0);
    const int64_t bad = first_invalid_cell(v);
    require(bad < 0, "particle cell " + std::to_string(bad) + " lies outside the " + std::to_string(H) + "x" +
                         std::to_string(W) + " image at its level");
    return v;
}

}  // namespace

void bind_ops(py::module_& m);  // bindings_ops.cpp

PYBIND11_MODULE(_core, m) {
    m.doc() = "aprlib C++ kernels: APR formation, sampling, reconstruction and APRNet operations (2D).";

    m.def("form_structure",
          [](const carray<float>& img, double rel_error, double grad_th, double Ip_th, double sigma_th,
             double sigma_th_max, bool smooth, double b1, double b2, double norm, int bspline_k,
             bool minimal_grading) {
              check_image(img, "image");
              Params p = make_params(rel_error, grad_th, Ip_th, sigma_th, sigma_th_max, smooth, b1, b2, norm,
                                     bspline_k);
              p.minimal_grading = minimal_grading;
              Structure s;
              {
                  py::gil_scoped_release release;
                  s = form_structure(img.data(), img.shape(0), img.shape(1), p);
              }
              return structure_to_dict(std::move(s));
          },
          py::arg("image"), py::arg("rel_error"), py::arg("grad_th"), py::arg("Ip_th"), py::arg("sigma_th"),
          py::arg("sigma_th_max"), py::arg("smooth"), py::arg("b1"), py::arg("b2"), py::arg("norm"),
          py::arg("bspline_k"), py::arg("minimal_grading") = false,
          "Particle cell structure of a float32 (H, W) image; returns a dict of numpy arrays.");

    m.def("form_apr",
          [](const carray<float>& gray, const carray<float>& img, double rel_error, double grad_th, double Ip_th,
             double sigma_th, double sigma_th_max, bool smooth, double b1, double b2, double norm, int bspline_k,
             bool minimal_grading) {
              // Shapes are checked; finiteness is the caller's (aprlib.form_apr checks it once, with
              // max_abs_finite): the kernels only compare, clamp and sum values, so non-finite ones
              // would give a meaningless APR but touch no memory outside the arrays.
              require(gray.ndim() == 2, "gray must be 2D (H, W), got ndim=" + std::to_string(gray.ndim()));
              require(gray.shape(0) > 0 && gray.shape(1) > 0, "gray must not be empty");
              require(img.ndim() == 3 && img.shape(0) == gray.shape(0) && img.shape(1) == gray.shape(1) &&
                          img.shape(2) > 0,
                      "image must be (H, W, C) with C >= 1 and the (H, W) of gray");
              Params p = make_params(rel_error, grad_th, Ip_th, sigma_th, sigma_th_max, smooth, b1, b2, norm,
                                     bspline_k);
              p.minimal_grading = minimal_grading;
              const int64_t C = img.shape(2);
              Structure s;
              {
                  py::gil_scoped_release release;
                  s = form_structure(gray.data(), gray.shape(0), gray.shape(1), p);
              }
              // the kernel's own cells: inside the image by construction, no re-check needed
              const CellView v = view_of(s);
              carray<float> means({static_cast<int64_t>(v.n), C});
              {
                  py::gil_scoped_release release;
                  cell_means(v, img.data(), C, means.mutable_data());
              }
              auto level_offsets = bindutil::to_numpy(std::move(s.level_offsets));
              auto tree_offsets = bindutil::to_numpy(std::move(s.tree_offsets));
              py::dict d = structure_to_dict(std::move(s));
              d["level_offsets"] = level_offsets;
              d["tree_offsets"] = tree_offsets;
              return py::make_tuple(d, means);
          },
          py::arg("gray"), py::arg("image"), py::arg("rel_error"), py::arg("grad_th"), py::arg("Ip_th"),
          py::arg("sigma_th"), py::arg("sigma_th_max"), py::arg("smooth"), py::arg("b1"), py::arg("b2"),
          py::arg("norm"), py::arg("bspline_k"), py::arg("minimal_grading") = false,
          "form_structure of the float32 (H, W) image gray, and the means (N, C) of the float32 (H, W, C) "
          "image over its particle cells: (structure dict with level_offsets and tree_offsets, means). "
          "Neither image is checked for finiteness (see max_abs_finite).");

    m.def("max_abs_finite",
          [](const py::array_t<float, py::array::c_style>& img) {
              int64_t bad = -1;
              float m;
              {
                  py::gil_scoped_release release;
                  m = max_abs_finite(img.data(), img.size(), &bad);
              }
              return py::make_tuple(static_cast<double>(m), bad);
          },
          py::arg("image"),
          "(max |image|, -1) for a float32 array of finite values, in one pass; (nan, i) if it has a NaN or "
          "infinity, the first at flat index i.");

    m.def("bspline_smooth",
          [](const carray<float>& img, double b1, double b2, double norm, int bspline_k) {
              check_image(img, "image");
              const Params p = make_params(1.0, 0, 0, 0, 0, true, b1, b2, norm, bspline_k);
              carray<float> out({img.shape(0), img.shape(1)});
              {
                  py::gil_scoped_release release;
                  bspline_smooth(img.data(), img.shape(0), img.shape(1), p, out.mutable_data());
              }
              return out;
          },
          py::arg("image"), py::arg("b1"), py::arg("b2"), py::arg("norm"), py::arg("bspline_k"),
          "Smoothing B-spline coefficients (H, W) of a float32 image.");

    m.def("gradient_magnitude_ds",
          [](const carray<float>& coef, const carray<float>& img, double grad_th, double Ip_th) {
              check_image(coef, "coef");
              check_image(img, "image");
              require(coef.shape(0) == img.shape(0) && coef.shape(1) == img.shape(1),
                      "coef and image must have the same shape");
              const Params p = make_params(1.0, grad_th, Ip_th, 0, 0, false, 0, 0, 1, 0);
              const int64_t H = img.shape(0), W = img.shape(1), n = ((H + 1) / 2) * ((W + 1) / 2);
              carray<float> out({(H + 1) / 2, (W + 1) / 2});
              {
                  py::gil_scoped_release release;
                  std::vector<float> half(n);
                  gradient_magnitude_ds(coef.data(), H, W, out.mutable_data());
                  half_image(img.data(), H, W, false, half.data());
                  threshold_gradient(out.mutable_data(), half.data(), n, p);
              }
              return out;
          },
          py::arg("coef"), py::arg("image"), py::arg("grad_th"), py::arg("Ip_th"),
          "Central-difference |grad| of coef, max-downsampled to (ceil(H/2), ceil(W/2)), zeroed where "
          "it is < grad_th or where the 2x2 mean of image is <= Ip_th.");

    m.def("local_intensity_scale",
          [](const carray<float>& img, double sigma_th, double sigma_th_max, bool from_bspline) {
              check_image(img, "image");
              const Params p = make_params(1.0, 0, 0, sigma_th, sigma_th_max, from_bspline, 0, 0, 1, 0);
              const int64_t H = img.shape(0), W = img.shape(1), Hh = (H + 1) / 2, Wh = (W + 1) / 2;
              carray<float> out({Hh, Wh});
              {
                  py::gil_scoped_release release;
                  std::vector<float> half(Hh * Wh);
                  half_image(img.data(), H, W, from_bspline, half.data());
                  local_intensity_scale(half.data(), Hh, Wh, p, out.mutable_data());
              }
              return out;
          },
          py::arg("image"), py::arg("sigma_th"), py::arg("sigma_th_max"), py::arg("from_bspline") = false,
          "Local intensity scale on the half grid (ceil(H/2), ceil(W/2)); from_bspline: image holds "
          "B-spline coefficients.");

    m.def("box_mean",
          [](const carray<float>& img, int width) {
              check_image(img, "image");
              require(width >= 1 && width % 2 == 1, "width must be a positive odd integer");
              carray<float> out({img.shape(0), img.shape(1)});
              {
                  py::gil_scoped_release release;
                  box_mean(img.data(), img.shape(0), img.shape(1), width, out.mutable_data());
              }
              return out;
          },
          py::arg("image"), py::arg("width"), "Separable box mean with reflective borders.");

    m.def("cell_means",
          [](const carray<int8_t>& level, const carray<int32_t>& y, const carray<int32_t>& x,
             const carray<float>& img) {
              require(img.ndim() == 3, "image must be (H, W, C)");
              require(img.shape(2) > 0, "image must have at least one channel");
              check_finite(img, "image");
              const CellView v = checked_view(level, y, x, img.shape(0), img.shape(1));
              const int64_t C = img.shape(2);
              carray<float> out({static_cast<int64_t>(v.n), C});
              {
                  py::gil_scoped_release release;
                  cell_means(v, img.data(), C, out.mutable_data());
              }
              return out;
          },
          py::arg("level"), py::arg("y"), py::arg("x"), py::arg("image"),
          "Mean of the (H, W, C) image over each particle cell -> (N, C).");

    m.def("reconstruct",
          [](const carray<int8_t>& level, const carray<int32_t>& y, const carray<int32_t>& x,
             const carray<float>& values, int64_t H, int64_t W) {
              require(values.ndim() == 2, "values must be (N, C)");
              const CellView v = checked_view(level, y, x, H, W);
              require(values.shape(0) == v.n, "values has " + std::to_string(values.shape(0)) +
                                                  " rows but the APR has " + std::to_string(v.n) + " particles");
              const int64_t C = values.shape(1);
              carray<float> out({H, W, C});
              std::fill(out.mutable_data(), out.mutable_data() + H * W * C, 0.0f);
              {
                  py::gil_scoped_release release;
                  reconstruct(v, values.data(), C, out.mutable_data());
              }
              return out;
          },
          py::arg("level"), py::arg("y"), py::arg("x"), py::arg("values"), py::arg("height"), py::arg("width"),
          "Piecewise-constant image (H, W, C) from particle values (N, C).");

    m.def("level_range", [](int64_t H, int64_t W) {
              require(H > 0 && W > 0, "image height and width must be positive");
              const Geometry g = make_geometry(H, W);
              return py::make_tuple(g.level_min, g.level_max);
          },
          py::arg("height"), py::arg("width"),
          "(level_min, level_max) of an H x W image: the one rule, level_max = max(ceil(log2(max(H, W))), 2).");

    m.def("form_apr3d",
          [](const carray<float>& volume, double rel_error, double grad_th, double Ip_th, double sigma_th,
             double sigma_th_max, bool smooth, double b1, double b2, double norm, int bspline_k,
             bool minimal_grading, const py::object& means_of, bool check_finite) {
              require(volume.ndim() == 3, "volume must be 3D (Z, Y, X), got ndim=" + std::to_string(volume.ndim()));
              require(volume.shape(0) > 0 && volume.shape(1) > 0 && volume.shape(2) > 0,
                      "volume must not be empty (shape " + std::to_string(volume.shape(0)) + "x" +
                          std::to_string(volume.shape(1)) + "x" + std::to_string(volume.shape(2)) + ")");
              require(volume.shape(0) <= INT32_MAX && volume.shape(1) <= INT32_MAX && volume.shape(2) <= INT32_MAX,
                      "volume sides must fit in int32");
              Params p = make_params(rel_error, grad_th, Ip_th, sigma_th, sigma_th_max, smooth, b1, b2, norm,
                                     bspline_k);
              p.minimal_grading = minimal_grading;
              const int64_t Z = volume.shape(0), Y = volume.shape(1), X = volume.shape(2);
              carray<float> source = volume;  // the volume whose cell means are returned
              if (!means_of.is_none()) {
                  source = means_of.cast<carray<float>>();
                  require(source.ndim() == 3 && source.shape(0) == Z && source.shape(1) == Y && source.shape(2) == X,
                          "means_of must have the volume's shape (Z, Y, X)");
              }
              Structure3 s;
              int64_t bad = -1;
              {
                  py::gil_scoped_release release;
                  if (check_finite) max_abs_finite(volume.data(), Z * Y * X, &bad);
                  if (check_finite && bad < 0 && !means_of.is_none()) {
                      max_abs_finite(source.data(), Z * Y * X, &bad);
                      if (bad >= 0) bad += Z * Y * X;  // reported for means_of below
                  }
                  if (bad < 0) s = form_structure3d(volume.data(), Z, Y, X, p);
              }
              require(bad < 0 || bad >= Z * Y * X, "volume contains NaN or infinite values (first at flat index " +
                                                       std::to_string(bad) + ")");
              require(bad < 0, "means_of contains NaN or infinite values (first at flat index " +
                                   std::to_string(bad - Z * Y * X) + ")");
              const int64_t n = static_cast<int64_t>(s.level.size());
              carray<float> means({n});
              {
                  py::gil_scoped_release release;
                  cell_means3d(s, source.data(), means.mutable_data());
              }
              py::dict d;
              d["depth"] = s.g.Z;
              d["height"] = s.g.Y;
              d["width"] = s.g.X;
              d["level_min"] = s.g.level_min;
              d["level_max"] = s.g.level_max;
              d["level_offsets"] = bindutil::to_numpy(std::move(s.level_offsets));
              d["level"] = bindutil::to_numpy(std::move(s.level));
              d["z"] = bindutil::to_numpy(std::move(s.z));
              d["y"] = bindutil::to_numpy(std::move(s.y));
              d["x"] = bindutil::to_numpy(std::move(s.x));
              d["parent"] = bindutil::to_numpy(std::move(s.parent));
              d["tree_offsets"] = bindutil::to_numpy(std::move(s.tree_offsets));
              d["tree_level"] = bindutil::to_numpy(std::move(s.tree_level));
              d["tree_z"] = bindutil::to_numpy(std::move(s.tree_z));
              d["tree_y"] = bindutil::to_numpy(std::move(s.tree_y));
              d["tree_x"] = bindutil::to_numpy(std::move(s.tree_x));
              d["tree_parent"] = bindutil::to_numpy(std::move(s.tree_parent));
              return py::make_tuple(d, means);
          },
          py::arg("volume"), py::arg("rel_error"), py::arg("grad_th"), py::arg("Ip_th"), py::arg("sigma_th"),
          py::arg("sigma_th_max"), py::arg("smooth"), py::arg("b1"), py::arg("b2"), py::arg("norm"),
          py::arg("bspline_k"), py::arg("minimal_grading") = false, py::arg("means_of") = py::none(), py::arg("check_finite") = true,
          "APR particle cells of a float32 C-contiguous (Z, Y, X) volume of finite values (LibAPR's pipeline "
          "in 3D) and the mean of the volume over each: (cells, means). cells: dict with depth, height, width, "
          "level_min, level_max (ints), level_offsets (level_max + 2,) int64, level (N,) int8, z, y, x (N,) int32 "
          "cell indices at their level, sorted by (level, z, y, x), parent (N,) int64 (tree index of each cell's parent, "
          "-1 at level_min), and the tree of their ancestors (levels level_min..level_max - 1): tree_offsets "
          "(level_max + 2,) int64, tree_level (T,) int8, tree_z, tree_y, tree_x (T,) int32, sorted by (level, z, y, x), "
          "tree_parent (T,) int64 (-1 at level_min); a cell of level l covers the voxels "
          "[i * 2^(level_max - l), (i + 1) * 2^(level_max - l)) along each axis, clipped to the volume. "
          "means: (N,) float32, of means_of (a float32 (Z, Y, X) volume) if given, else of volume. Shapes and "
          "parameters are checked before the kernels run, and so is finiteness of both volumes unless "
          "check_finite=False (for callers that checked it already, as form_volume_cells does: non-finite "
          "values then give meaningless cells but touch no memory outside the arrays).");

    m.def("level_range3d", [](int64_t Z, int64_t Y, int64_t X) {
              require(Z > 0 && Y > 0 && X > 0, "volume depth, height and width must be positive");
              const Geometry3 g = make_geometry3(Z, Y, X);
              return py::make_tuple(g.level_min, g.level_max);
          },
          py::arg("depth"), py::arg("height"), py::arg("width"),
          "(level_min, level_max) of a Z x Y x X volume: level_min = 1, level_max = max(ceil(log2(max(Z, Y, X))), 2) "
          "(level_range's rule with the third axis).");

    bind_ops(m);

    m.def("num_threads", []() {
#ifdef _OPENMP
        return omp_get_max_threads();
#else
        return 1;
#endif
    }, "Number of OpenMP threads the kernels use.");
    m.def("set_num_threads", [](int n) {
        require(n >= 1, "the number of threads must be >= 1");
#ifdef _OPENMP
        omp_set_num_threads(n);
#endif
    }, py::arg("n"), "Set the number of OpenMP threads of the kernels (like OMP_NUM_THREADS).");
}
