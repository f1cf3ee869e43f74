"""The `layerflow` command (Typer). Each command parses its arguments and calls one engine
function; user mistakes exit with status 2 and one message, no traceback.

    app.py    the Typer app and what the commands share (error handling, --json, --plugin)
    main.py   train and test
    tools.py  gradcheck, layers, summary, time, draw, plot, schema
    use.py    predict and export (using a trained model)
    caffe.py  convert (Caffe's files <-> layerflow's)
    __main__.py  the console script `layerflow` (and `python -m layerflow.cli`)
Importing this package registers every command on `app`.
"""
from . import caffe as _caffe  # noqa: F401  (registers convert on `app`)
from . import main as _main  # noqa: F401  (registers train and test on `app`)
from . import tools as _tools  # noqa: F401  (registers the tool commands on `app`)
from . import use as _use  # noqa: F401  (registers predict and export on `app`)
from .app import app

__all__ = ["app"]
