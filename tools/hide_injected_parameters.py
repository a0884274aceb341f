"""Tag papermill's injected-parameters cell with 'remove-cell' so the book does not show it twice
(the notebook's own parameters cell stays visible). Usage: python tools/hide_injected_parameters.py NB..."""
import sys

import nbformat

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed = True
    if changed:
        nbformat.write(nb, path)
