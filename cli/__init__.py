"""The `layerflow` command (Typer). Each command parses its arguments and calls one engine
function; user mistakes exit with status 2 and one message, no traceback."""
