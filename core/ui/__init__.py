"""Web viewer: ``pipetrace ui`` (live, read-only over the store) and ``pipetrace report`` (one file).

``payload`` builds the JSON the page reads, ``page`` the HTML, ``server`` the HTTP side; the page itself
is hand-written JS + SVG under ``static/`` (no build step).
"""
