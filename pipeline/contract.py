"""The store contract for whoever reads the stores (the trainer, benchmarks, figures).

Which arrays each stage writes, with dtype and rank, as stages.yaml declares them (``outputs:``
per stage; for ``scenes``, the dataset's ``record:`` kind under ``records:``). The runner checks
every write against the same declarations, so a name read through here is one a finished scene
holds (an optional record key only when the reader had it).
"""
from __future__ import annotations

import functools
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.fields import Field, Fields
from pipeline.stages import Graph, load_graph, stages_path


@functools.cache
def _graph(path: Path) -> Graph:
    """The validated stage graph of a stages file, loaded once."""
    return load_graph(path)


def declared(stage: str, dataset: str | None = None, stages_file: str | Path | None = None) -> Fields:
    """The declared keys of what ``stage`` writes (for the source stage: with ``dataset``'s record)."""
    graph = _graph(stages_path(stages_file).resolve())
    if stage not in graph.stages:
        raise PipelineError(f"unknown stage '{stage}' (known: {', '.join(graph.order)})")
    if graph.stages[stage].kind == "source" and dataset is None:
        raise PipelineError(f"stage '{stage}' writes its dataset's record: name the dataset")
    fields = graph.outputs(stage, dataset)
    if fields is None:
        raise PipelineError(f"stage '{stage}' declares no outputs"
                            + (f" for dataset '{dataset}' (no record kind)" if dataset else ""))
    return fields


def output_names(stage: str, dataset: str | None = None, stages_file: str | Path | None = None,
                 ) -> tuple[str, ...]:
    """Names of the arrays ``stage`` writes, required first (``scenes`` needs the ``dataset``)."""
    return declared(stage, dataset, stages_file).array_names()


def output_field(stage: str, name: str, dataset: str | None = None,
                 stages_file: str | Path | None = None) -> Field:
    """The declaration (dtype and rank, or value type) of one key ``stage`` writes."""
    fields = declared(stage, dataset, stages_file).all()
    if name not in fields:
        raise PipelineError(f"stage '{stage}' declares no key '{name}' (declared: {', '.join(fields)})")
    return fields[name]
