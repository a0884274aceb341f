// Sparse APR structures and index tables; see apr_tables.hpp for the contract of each function.
#include "apr_tables.hpp"

#include "apr_ops.hpp"

#include <algorithm>
#include <utility>

namespace aprtables {


namespace {

// Sorted (y, x) of one level's cells as 64-bit keys y << 32 | x (y, x >= 0 and < 2^31).
inline uint64_t key_of(int64_t y, int64_t x) { return (uint64_t(y) << 32) | uint64_t(x); }
inline int64_t key_y(uint64_t k) { return int64_t(k >> 32); }
inline int64_t key_x(uint64_t k) { return int64_t(k & 0xffffffffu); }

// Index in [lo, hi) of x in the ascending xs, or -1.
inline int64_t find_x(const int32_t* xs, int64_t lo, int64_t hi, int64_t x) {
    const int32_t* p = std::lower_bound(xs + lo, xs + hi, static_cast<int32_t>(x));
    return (p != xs + hi && *p == x) ? p - xs : -1;
}

// Start of every row 0..R of a level whose entries are [begin, end) (absolute indices), rows given by
// row_of(i), ascending along the level.
template <typename RowOf>
std::vector<int64_t> row_starts(RowOf row_of, int64_t begin, int64_t end, int64_t R) {
    std::vector<int64_t> starts(R + 1);
    int64_t i = begin;
    for (int64_t r = 0; r <= R; ++r) {
        while (i < end && row_of(i) < r) ++i;
        starts[r] = i;
    }
    return starts;
}

// Offsets of each level 0..L+1 in n entries sorted by level.
std::vector<int64_t> level_offsets(const int8_t* level, int64_t n, int L) {
    std::vector<int64_t> off(L + 2);
    for (int l = 0; l <= L + 1; ++l) off[l] = std::lower_bound(level, level + n, static_cast<int8_t>(l)) - level;
    return off;
}

}  // namespace

RowIndex row_index(const SortedView& v) {
    const int L = v.level_max;
    const std::vector<int64_t> poff = level_offsets(v.level, v.N, L), toff = level_offsets(v.tree_level, v.T, L);
    RowIndex ri;
    ri.prow.resize(L + 1);
    ri.trow.resize(L + 1);
    for (int l = v.level_min; l <= L; ++l) {
        const int64_t ny = v.ny(l);
        ri.prow[l] = row_starts([&](int64_t i) { return v.row(v.z ? v.z[i] : 0, v.y[i], ny); }, poff[l], poff[l + 1],
                                v.rows(l));
        ri.trow[l] = row_starts([&](int64_t i) { return v.row(v.tree_z ? v.tree_z[i] : 0, v.tree_y[i], ny); },
                                toff[l], toff[l + 1], v.rows(l));
    }
    return ri;
}

namespace {

// The particle of level <= l covering level-l cell (z, y, x), or -1.
int64_t covering_particle(const SortedView& v, const RowIndex& ri, int l, int64_t z, int64_t y, int64_t x) {
    for (int lv = l; lv >= v.level_min; --lv, z >>= 1, y >>= 1, x >>= 1) {
        const int64_t row = v.row(z, y, v.ny(lv));
        const int64_t p = find_x(v.x, ri.prow[lv][row], ri.prow[lv][row + 1], x);
        if (p >= 0) return p;
    }
    return -1;
}

}  // namespace

int64_t value_row(const SortedView& v, const RowIndex& ri, int l, int64_t z, int64_t y, int64_t x) {
    const int64_t zero = v.N + v.T;
    if (l < v.level_min || l > v.level_max) return -1;
    if (z < 0 || y < 0 || x < 0 || z >= v.nz(l) || y >= v.ny(l) || x >= v.nx(l)) return zero;
    const int64_t row = v.row(z, y, v.ny(l));
    const int64_t p = find_x(v.x, ri.prow[l][row], ri.prow[l][row + 1], x);
    if (p >= 0) return p;
    const int64_t t = find_x(v.tree_x, ri.trow[l][row], ri.trow[l][row + 1], x);
    if (t >= 0) return v.N + t;
    return covering_particle(v, ri, l - 1, z >> 1, y >> 1, x >> 1);
}

bool structure_from_cells(const CellView& v, Structure& out, std::string& error) {
    const Geometry& g = v.g;
    const int L = g.level_max, lmin = g.level_min;
    // particle keys per level, sorted
    std::vector<std::vector<uint64_t>> pk(L + 1), tk(L + 1);
    for (int64_t i = 0; i < v.n; ++i) {
        const int l = v.level[i];
        if (l < lmin || l > L || v.y[i] < 0 || v.x[i] < 0 || v.y[i] >= g.rows(l) || v.x[i] >= g.cols(l)) {
            error = "cell " + std::to_string(i) + " is outside the image at its level (levels " +
                    std::to_string(lmin) + ".." + std::to_string(L) + ")";
            return false;
        }
        pk[l].push_back(key_of(v.y[i], v.x[i]));
    }
    auto where = [](int l, uint64_t k) {
        return "level " + std::to_string(l) + ", row " + std::to_string(key_y(k)) + ", column " +
               std::to_string(key_x(k));
    };
    for (int l = lmin; l <= L; ++l) {
        std::sort(pk[l].begin(), pk[l].end());
        auto d = std::adjacent_find(pk[l].begin(), pk[l].end());
        if (d != pk[l].end()) {
            error = "cell at " + where(l, *d) + " appears twice";
            return false;
        }
    }
    // tree: the ancestors of the particles, finest level first; every tree node must have all of
    // its children that lie in the image (else the cells leave a gap)
    std::vector<uint64_t> parents;
    for (int l = L; l > lmin; --l) {
        parents.clear();
        parents.reserve(pk[l].size() + tk[l].size());
        for (uint64_t k : pk[l]) parents.push_back(key_of(key_y(k) >> 1, key_x(k) >> 1));
        for (uint64_t k : tk[l]) parents.push_back(key_of(key_y(k) >> 1, key_x(k) >> 1));
        std::sort(parents.begin(), parents.end());
        std::vector<uint64_t>& tree = tk[l - 1];
        for (size_t a = 0; a < parents.size();) {
            size_t b = a;
            while (b < parents.size() && parents[b] == parents[a]) ++b;
            const int64_t py = key_y(parents[a]), px = key_x(parents[a]);
            const int64_t ny = std::min<int64_t>(2, g.rows(l) - 2 * py), nx = std::min<int64_t>(2, g.cols(l) - 2 * px);
            if (static_cast<int64_t>(b - a) != ny * nx) {
                // name the missing child
                for (int64_t dy = 0; dy < ny; ++dy)
                    for (int64_t dx = 0; dx < nx; ++dx) {
                        const uint64_t c = key_of(2 * py + dy, 2 * px + dx);
                        if (!std::binary_search(pk[l].begin(), pk[l].end(), c) &&
                            !std::binary_search(tk[l].begin(), tk[l].end(), c)) {
                            error = "particle cells leave a gap at level " + std::to_string(l) + " (row " +
                                    std::to_string(2 * py + dy) + ", column " + std::to_string(2 * px + dx) + ")";
                            return false;
                        }
                    }
            }
            tree.push_back(parents[a]);
            a = b;
        }
        // a particle that is also a tree node contains finer cells
        std::vector<uint64_t> both;
        std::set_intersection(pk[l - 1].begin(), pk[l - 1].end(), tree.begin(), tree.end(), std::back_inserter(both));
        if (!both.empty()) {
            error = "particle cells overlap (the cell at " + where(l - 1, both[0]) + " contains finer cells)";
            return false;
        }
    }
    // level_min: every cell is a particle or a tree node
    if (static_cast<int64_t>(pk[lmin].size() + tk[lmin].size()) != g.rows(lmin) * g.cols(lmin)) {
        for (int64_t r = 0; r < g.rows(lmin); ++r)
            for (int64_t c = 0; c < g.cols(lmin); ++c) {
                const uint64_t k = key_of(r, c);
                if (!std::binary_search(pk[lmin].begin(), pk[lmin].end(), k) &&
                    !std::binary_search(tk[lmin].begin(), tk[lmin].end(), k)) {
                    error = "particle cells leave a gap at level " + std::to_string(lmin) + " (row " +
                            std::to_string(r) + ", column " + std::to_string(c) + ")";
                    return false;
                }
            }
    }
    // the sorted arrays and parent indices
    out = Structure();
    out.g = g;
    out.level_offsets.assign(L + 2, 0);
    out.tree_offsets.assign(L + 2, 0);
    for (int l = 0; l <= L; ++l) {
        out.level_offsets[l + 1] = out.level_offsets[l] + static_cast<int64_t>(pk[l].size());
        out.tree_offsets[l + 1] = out.tree_offsets[l] + static_cast<int64_t>(tk[l].size());
        for (uint64_t k : pk[l]) {
            out.level.push_back(static_cast<int8_t>(l));
            out.y.push_back(static_cast<int32_t>(key_y(k)));
            out.x.push_back(static_cast<int32_t>(key_x(k)));
        }
        for (uint64_t k : tk[l]) {
            out.tree_level.push_back(static_cast<int8_t>(l));
            out.tree_y.push_back(static_cast<int32_t>(key_y(k)));
            out.tree_x.push_back(static_cast<int32_t>(key_x(k)));
        }
    }
    auto parent_of = [&](int l, int64_t y, int64_t x) -> int64_t {
        if (l <= lmin) return -1;
        const std::vector<uint64_t>& t = tk[l - 1];
        const auto it = std::lower_bound(t.begin(), t.end(), key_of(y >> 1, x >> 1));
        return out.tree_offsets[l - 1] + (it - t.begin());
    };
    const int64_t N = static_cast<int64_t>(out.y.size()), T = static_cast<int64_t>(out.tree_y.size());
    out.parent.resize(N);
    out.tree_parent.resize(T);
    for (int64_t i = 0; i < N; ++i) out.parent[i] = parent_of(out.level[i], out.y[i], out.x[i]);
    for (int64_t i = 0; i < T; ++i) out.tree_parent[i] = parent_of(out.tree_level[i], out.tree_y[i], out.tree_x[i]);
    return true;
}

void pool_structure(const Structure& s, Structure& out, std::vector<int32_t>& table) {
    const Geometry& g = s.g;
    const int L = g.level_max;
    const int64_t N = static_cast<int64_t>(s.y.size());
    const std::vector<int64_t> poff = level_offsets(s.level.data(), N, L),
                               toff = level_offsets(s.tree_level.data(), static_cast<int64_t>(s.tree_level.size()), L);
    const int top = N ? s.level[N - 1] : g.level_min;
    out = Structure();
    out.g = g;
    if (top <= g.level_min) {  // nothing to pool: every particle is copied
        out = s;
        out.level_offsets = poff;
        out.tree_offsets = toff;
        table.assign(4 * N, -1);
        for (int64_t i = 0; i < N; ++i) table[4 * i] = static_cast<int32_t>(i);
        return;
    }
    const int64_t keep_end = poff[top - 1];          // particles of levels < top - 1: kept as they are
    const int64_t mid0 = poff[top - 1], mid1 = poff[top];  // particles of level top - 1: kept
    const int64_t t0 = toff[top - 1], t1 = toff[top];      // tree nodes of level top - 1: become particles
    // children (particles of level top) of each tree node of level top - 1
    std::vector<int32_t> kids(4 * (t1 - t0), -1);
    std::vector<int8_t> nk(t1 - t0, 0);
    for (int64_t i = mid1; i < N; ++i) {
        const int64_t t = s.parent[i] - t0;
        kids[4 * t + nk[t]++] = static_cast<int32_t>(i);
    }
    const int64_t M = keep_end + (mid1 - mid0) + (t1 - t0);
    out.level.reserve(M);
    out.y.reserve(M);
    out.x.reserve(M);
    out.parent.reserve(M);
    table.assign(4 * M, -1);
    auto push = [&](int8_t l, int32_t y, int32_t x, int64_t parent) {
        out.level.push_back(l);
        out.y.push_back(y);
        out.x.push_back(x);
        out.parent.push_back(parent);
    };
    for (int64_t i = 0; i < keep_end; ++i) {
        table[4 * out.y.size()] = static_cast<int32_t>(i);
        push(s.level[i], s.y[i], s.x[i], s.parent[i]);
    }
    // merge the level top - 1 particles and tree nodes, both sorted by (y, x)
    int64_t a = mid0, b = t0;
    while (a < mid1 || b < t1) {
        const bool take_particle = b >= t1 || (a < mid1 && key_of(s.y[a], s.x[a]) < key_of(s.tree_y[b], s.tree_x[b]));
        const int64_t row = static_cast<int64_t>(out.y.size());
        if (take_particle) {
            table[4 * row] = static_cast<int32_t>(a);
            push(s.level[a], s.y[a], s.x[a], s.parent[a]);
            ++a;
        } else {
            std::copy(kids.begin() + 4 * (b - t0), kids.begin() + 4 * (b - t0 + 1), table.begin() + 4 * row);
            push(s.tree_level[b], s.tree_y[b], s.tree_x[b], s.tree_parent[b]);
            ++b;
        }
    }
    // the tree loses its finest level; the remaining nodes keep their indices
    out.tree_level.assign(s.tree_level.begin(), s.tree_level.begin() + t0);
    out.tree_y.assign(s.tree_y.begin(), s.tree_y.begin() + t0);
    out.tree_x.assign(s.tree_x.begin(), s.tree_x.begin() + t0);
    out.tree_parent.assign(s.tree_parent.begin(), s.tree_parent.begin() + t0);
    out.level_offsets = level_offsets(out.level.data(), static_cast<int64_t>(out.level.size()), L);
    out.tree_offsets = level_offsets(out.tree_level.data(), static_cast<int64_t>(out.tree_level.size()), L);
}

void child_table(const Structure& s, int32_t* children, int32_t* counts) {
    const int64_t N = static_cast<int64_t>(s.y.size()), T = static_cast<int64_t>(s.tree_y.size());
    std::fill(children, children + 4 * T, int32_t(-1));
    std::fill(counts, counts + T, int32_t(0));
    for (int64_t i = 0; i < N; ++i)
        if (s.parent[i] >= 0) {
            const int64_t t = s.parent[i];
            children[4 * t + counts[t]++] = static_cast<int32_t>(i);
        }
    for (int64_t i = 0; i < T; ++i)
        if (s.tree_parent[i] >= 0) {
            const int64_t t = s.tree_parent[i];
            children[4 * t + counts[t]++] = static_cast<int32_t>(N + i);
        }
}

namespace {

// Value rows of level-l cells (zz, yy, xa .. xa + len - 1) into out[0 .. len): the particle or tree node
// there, else the coarser particle covering it, the zero row outside the image; -1 if uncovered.
void resolve_strip(const SortedView& v, const RowIndex& ri, int l, int64_t zz, int64_t yy, int64_t xa, int64_t len,
                   int64_t zero, int32_t* out) {
    const int64_t N = v.N, C = v.nx(l), ny = v.ny(l);
    if (zz < 0 || zz >= v.nz(l) || yy < 0 || yy >= ny) {
        std::fill(out, out + len, static_cast<int32_t>(zero));
        return;
    }
    const int64_t row = v.row(zz, yy, ny);
    const int32_t* px = v.x;
    const int32_t* tx = v.tree_x;
    const int64_t pe = ri.prow[l][row + 1], te = ri.trow[l][row + 1];
    const int64_t x0 = std::max<int64_t>(xa, 0);
    int64_t p = std::lower_bound(px + ri.prow[l][row], px + pe, static_cast<int32_t>(x0)) - px;
    int64_t t = std::lower_bound(tx + ri.trow[l][row], tx + te, static_cast<int32_t>(x0)) - tx;
    int64_t last_parent = -1, last_v = -1;  // neighbouring columns share a parent cell
    for (int64_t j = 0; j < len; ++j) {
        const int64_t xx = xa + j;
        int64_t val;
        if (xx < 0 || xx >= C) {
            val = zero;
        } else {
            while (p < pe && px[p] < xx) ++p;
            while (t < te && tx[t] < xx) ++t;
            if (p < pe && px[p] == xx) val = p;
            else if (t < te && tx[t] == xx) val = N + t;
            else if ((xx >> 1) == last_parent) val = last_v;
            else {  // inside a coarser cell
                val = covering_particle(v, ri, l - 1, zz >> 1, yy >> 1, xx >> 1);
                last_parent = xx >> 1;
                last_v = val;
            }
        }
        out[j] = static_cast<int32_t>(val);
    }
}

}  // namespace

int64_t neighbour_table(const SortedView& v, int k, int32_t* table) {
    // Particles of one level and row (z, y), close together, share their windows' rows: each run of them
    // resolves k^(d-1) strips (rows (z + dz, y + dy) over the run's columns +- r) once and copies its
    // windows, offsets in row-major order over (dz, dy, dx).
    const int64_t N = v.N, zero = v.N + v.T, r = k / 2;
    const int64_t S = v.z ? int64_t(k) * k : int64_t(k), K = S * k;  // strips per run, entries per particle
    const int64_t rz = v.z ? r : 0;
    const RowIndex ri = row_index(v);
    auto z_of = [&](int64_t i) -> int64_t { return v.z ? v.z[i] : 0; };
    // the (level, row) groups of particles
    std::vector<int64_t> group;  // first particle of each group, then N
    for (int64_t i = 0; i < N; ++i)
        if (i == 0 || v.level[i] != v.level[i - 1] || v.y[i] != v.y[i - 1] || z_of(i) != z_of(i - 1)) group.push_back(i);
    group.push_back(N);
    const int64_t G = static_cast<int64_t>(group.size()) - 1;
    int64_t missing = 0;
#pragma omp parallel reduction(+ : missing) if (N * K >= aprops::parallel_threshold())
    {
        std::vector<int32_t> strip;
#pragma omp for schedule(dynamic, 16)
        for (int64_t gi = 0; gi < G; ++gi) {
            const int l = v.level[group[gi]];
            const int64_t z = z_of(group[gi]), y = v.y[group[gi]];
            for (int64_t a = group[gi]; a < group[gi + 1];) {
                int64_t b = a + 1;  // a run: gaps of at most k columns
                while (b < group[gi + 1] && v.x[b] - v.x[b - 1] <= k) ++b;
                const int64_t xa = v.x[a] - r, len = v.x[b - 1] - v.x[a] + 2 * r + 1;
                strip.resize(S * len);
                int32_t* dst = strip.data();
                for (int64_t dz = -rz; dz <= rz; ++dz)
                    for (int64_t dy = -r; dy <= r; ++dy, dst += len)
                        resolve_strip(v, ri, l, z + dz, y + dy, xa, len, zero, dst);
                for (int64_t i = a; i < b; ++i) {
                    int32_t* out = table + i * K;
                    const int64_t off = v.x[i] - v.x[a];
                    for (int64_t s = 0; s < S; ++s, out += k) {
                        const int32_t* src = strip.data() + s * len + off;
                        std::copy(src, src + k, out);
                        for (int64_t j = 0; j < k; ++j) missing += src[j] < 0;
                    }
                }
                a = b;
            }
        }
    }
    return missing;
}

}  // namespace aprtables
