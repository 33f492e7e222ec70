"""Run from the installed wheel, outside the repository (make wheel-check): a
notebook cell that shows a trace, executed by a real Jupyter kernel; its output
must be the trace's one HTML display (diagram frame, one SVG, the table)."""

import nbformat
from nbclient import NotebookClient

cell = "import torch, layerlens as ll\nll.trace(torch.nn.Sequential(torch.nn.Linear(3, 2)), torch.randn(4, 3))"
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
NotebookClient(nb, timeout=300, kernel_name="python3").execute()
(output,) = nb.cells[0].outputs
data = output["data"]
assert output["output_type"] == "execute_result" and "image/svg+xml" not in data, list(data)
page = data["text/html"]
assert page.count("<svg") == 1 and "layerlens-table" in page and "ll-frame" in page, page[:300]
print("notebook cell: one HTML output with one SVG and the table")
