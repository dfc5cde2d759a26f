"""``mitodet view``: review a detect output folder in the browser (see ``docs/viewer.md``).

:mod:`.catalog` says which files may be served, :mod:`.tiles` makes deep-zoom tiles of the
inputs through the same readers detection used, :mod:`.review` validates and saves the
corrections (``NAME.reviewed.geojson``), :mod:`.app` is the Flask application.
"""
