"""A loaded document (YAML, or a Caffe .prototxt converted in memory) and where each of its
key paths was written, for errors that name file:line:col. Its own module so that readers of
other formats (layerflow.caffe) can build one without importing the YAML reader."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Path_ = tuple  # a key path: ("layers", 3, "num_output")


@dataclass
class Source:
    """A YAML document: its data and where each key path was written."""

    file: str
    data: Any
    marks: dict[Path_, str] = field(default_factory=dict)
    # documents that come with this one rather than from their own file (the net of a Caffe
    # solver .prototxt given inline, or merged from its train_net and test_net)
    children: dict[str, "Source"] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return Path(self.file).resolve().parent if self.file != "<string>" else Path.cwd()

    def locate(self, path: Path_) -> str:
        """'file:line:col' of the deepest written part of `path`."""
        # one value written where a list is expected (`include: {phase: test}`) has no index
        # in the file: skip indices that were not written
        kept: tuple = ()
        for part in path:
            if isinstance(part, int) and kept + (part,) not in self.marks:
                continue
            kept += (part,)
        path = kept
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get((), f"{self.file}:1:1")
