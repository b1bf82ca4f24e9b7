"""What people look at: the dashboard `streamdrift serve` runs and the HTML file
`streamdrift report` writes.

Data flows one way: Redis → the documents `inspect --json` prints (`report.py`,
`feature_report.py`) → `views` (the overview of every model) → `charts` (Plotly
figures, drawn as SVG in the browser by the plotly.js shipped with the Python package,
so nothing is fetched from the network) → `pages` (HTML) → `server` (read-only HTTP) or
`export` (one self-contained file). Every number on a chart is a number of the JSON
documents, which is how the tests check the charts."""
