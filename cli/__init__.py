"""The ``aidetect`` command. The top of the import graph: it may import every package."""
