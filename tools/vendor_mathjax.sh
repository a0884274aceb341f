#!/usr/bin/env bash
# Vendor MathJax 3 into book/_static/mathjax/ so the built book renders math
# without any CDN. The copy is git-ignored; this script runs before each build
# and does nothing if the copy is already there.
#
# Source: the `mathjax` package on the npm registry, fetched with `npm pack`
# into a temporary directory (no global install, no node_modules in the repo).
set -euo pipefail

MATHJAX_VERSION="${MATHJAX_VERSION:-3.2.2}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${repo_root}/book/_static/mathjax"

if [[ -f "${dest}/tex-chtml.js" ]]; then
    echo "vendor_mathjax: ${dest}/tex-chtml.js already present, nothing to do"
    exit 0
fi

command -v npm >/dev/null 2>&1 || {
    echo "vendor_mathjax: npm is required (Node.js >= 18)" >&2
    exit 1
}

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

echo "vendor_mathjax: fetching mathjax@${MATHJAX_VERSION} from the npm registry"
(cd "${tmp}" && npm pack "mathjax@${MATHJAX_VERSION}" --silent >/dev/null)
tarball="${tmp}/mathjax-${MATHJAX_VERSION}.tgz"
[[ -f "${tarball}" ]] || { echo "vendor_mathjax: npm pack produced no ${tarball}" >&2; exit 1; }
tar -xzf "${tarball}" -C "${tmp}"
src="${tmp}/package/es5"

# Everything tex-chtml.js can load at run time:
#   output/chtml/fonts/woff-v2   CommonHTML fonts
#   input/tex/extensions         TeX packages pulled in by autoload / \require
#   ui/                          context menu, lazy typesetting, safe mode
#   a11y/ + sre/                 accessibility extensions the menu can switch on
#   output/svg(.js)              the menu's "Math Renderer: SVG" option
#   input/mml(.js)               MathML input, used by the a11y extensions
rm -rf "${dest}.partial"
mkdir -p "${dest}.partial"
cp "${src}/tex-chtml.js" "${dest}.partial/"
for part in input output ui a11y sre; do
    cp -R "${src}/${part}" "${dest}.partial/${part}"
done
# MathJax is Apache-2.0: keep its licence next to the copy.
cp "${tmp}/package/LICENSE" "${dest}.partial/LICENSE"
echo "mathjax ${MATHJAX_VERSION} (npm), es5 build" > "${dest}.partial/VERSION"

# Sanity checks before publishing the copy.
for f in tex-chtml.js output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff \
         input/tex/extensions/ams.js ui/menu.js; do
    [[ -f "${dest}.partial/${f}" ]] || { echo "vendor_mathjax: missing ${f}" >&2; exit 1; }
done

rm -rf "${dest}"
mv "${dest}.partial" "${dest}"
echo "vendor_mathjax: installed $(du -sh "${dest}" | cut -f1) into ${dest}"
