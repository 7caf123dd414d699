"""`python -m jupyter_serving serve ...` is `jupyter-serving serve ...`."""

from jupyter_serving.cli import main

main()
