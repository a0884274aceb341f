// Helpers shared by the pybind11 binding files: argument checks and structure -> numpy conversion.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <utility>
#include <vector>

#include "apr_core.hpp"

namespace bindutil {

namespace py = pybind11;

template <typename T>
using carray = py::array_t<T, py::array::c_style>;  // no forcecast: wrong dtypes raise TypeError

inline void require(bool ok, const std::string& msg) {
    if (!ok) throw py::value_error(msg);
}

// A 1D numpy array owning the vector's memory (no copy).
template <typename T, typename A>
py::array_t<T> to_numpy(std::vector<T, A>&& v) {
    auto* heap = new std::vector<T, A>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T, A>*>(p); });
    return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, {sizeof(T)}, heap->data(), owner);
}

// The arrays of a Structure as the dict that aprlib.APR.from_structure takes.
inline py::dict structure_to_dict(aprcore::Structure&& s) {
    py::dict d;
    d["height"] = s.g.H;
    d["width"] = s.g.W;
    d["level_min"] = s.g.level_min;
    d["level_max"] = s.g.level_max;
    d["level"] = to_numpy(std::move(s.level));
    d["y"] = to_numpy(std::move(s.y));
    d["x"] = to_numpy(std::move(s.x));
    d["parent"] = to_numpy(std::move(s.parent));
    d["tree_level"] = to_numpy(std::move(s.tree_level));
    d["tree_y"] = to_numpy(std::move(s.tree_y));
    d["tree_x"] = to_numpy(std::move(s.tree_x));
    d["tree_parent"] = to_numpy(std::move(s.tree_parent));
    return d;
}

}  // namespace bindutil
