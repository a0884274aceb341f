#!/usr/bin/env bash
# Vendor MathJax 3 from npm into book/_static/mathjax/ (git-ignored).
#
# The book build no longer runs this: it takes the same MathJax 3.2.2 (es5 build, fonts, TeX
# extensions, menu) from the PyPI package sphinx-mathjax-offline, in the `book` extra, so it needs
# no npm and no network. This script is the fallback should that package ever be unusable: run it,
# then in _config.yml remove `sphinx-mathjax-offline` from sphinx.config.extensions and add
# `html_static_path: [book/_static]` (mathjax_path stays mathjax/tex-chtml.js).
#
# Source: the `mathjax` package on the npm registry, fetched with `npm pack` into a temporary
# directory (no global install, no node_modules in the repo). It needs the npm registry (network)
# or a warm npm cache; when that fails it says so, with npm's own error, within NPM_TIMEOUT seconds.
set -euo pipefail

MATHJAX_VERSION="${MATHJAX_VERSION:-3.2.2}"
NPM_TIMEOUT="${NPM_TIMEOUT:-60}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${MATHJAX_DEST:-${repo_root}/book/_static/mathjax}"

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

echo "vendor_mathjax: fetching mathjax@${MATHJAX_VERSION} from the npm registry (or the npm cache)"
# Few, short retries: offline, npm's defaults retry for over a minute before failing.
cmd=(npm pack "mathjax@${MATHJAX_VERSION}" --fetch-retries=1 --fetch-retry-mintimeout=2000
     --fetch-retry-maxtimeout=5000 --fetch-timeout=20000)
if command -v timeout >/dev/null 2>&1; then cmd=(timeout "${NPM_TIMEOUT}" "${cmd[@]}"); fi
status=0
(cd "${tmp}" && "${cmd[@]}" >"${tmp}/npm.out" 2>"${tmp}/npm.err") || status=$?
tarball="${tmp}/mathjax-${MATHJAX_VERSION}.tgz"
if [[ ${status} -ne 0 || ! -f "${tarball}" ]]; then
    reason="exit ${status}"
    if [[ ${status} -eq 124 ]]; then reason="timed out after ${NPM_TIMEOUT} s"; fi
    if [[ ${status} -eq 0 ]]; then reason="no ${tarball##*/} produced"; fi
    {
        echo "vendor_mathjax: FAILED (${reason}): (cd ${tmp} && ${cmd[*]})"
        echo "--- npm's output:"
        cat "${tmp}/npm.out" "${tmp}/npm.err"
        echo "---"
        echo "vendor_mathjax: this step needs the npm registry (network access) or a warm npm cache."
        echo "  On a machine with network: npm pack mathjax@${MATHJAX_VERSION}, copy the .tgz here and"
        echo "  run: npm cache add ./mathjax-${MATHJAX_VERSION}.tgz, then this script again."
        echo "  The book build itself does not need this script (MathJax comes from sphinx-mathjax-offline)."
    } >&2
    exit 1
fi
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
