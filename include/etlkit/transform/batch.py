"""Which models a batch of landed rows touches, and building them (in memory, for small inputs).

A model is built when one of its source tables has new rows, or when a model it reads was built in
the same run (``dim_date`` follows the facts). :class:`~include.etlkit.transform.operators.
TransformLandedOperator` runs the same models on files, streaming; :func:`build_in_memory` runs them
on frames a caller already holds (unit tests, the marts' test warehouse).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from include.etlkit.lazy import lazy_module
from include.etlkit.pipelines.models import Model
from include.etlkit.transform.engine import Targets, build, empty_frame, input_frame, to_table

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
else:  # imported on first use, not while a DAG file is parsed
    pl = lazy_module("polars")
    pa = lazy_module("pyarrow")


def affected(models: Sequence[Model], changed: Iterable[str]) -> list[Model]:
    """The models to build when these source tables changed, in dependency order."""
    changed = set(changed)
    built: set[str] = set()
    plan = []
    for model in models:  # parse_models orders each model after those it reads
        if changed & set(model.source_tables) or built & set(model.upstream_models):
            plan.append(model)
            built.add(model.name)
    return plan


def build_in_memory(
    models: Sequence[Model],
    targets: Targets,
    new_rows: Mapping[str, pl.LazyFrame],
    current: Callable[[str], pl.LazyFrame],
) -> dict[str, pa.Table]:
    """Every model the new rows affect, as Arrow tables of the target schemas.

    ``new_rows[table]`` holds the table's new row versions, ``current(table)`` every version landed
    so far (read by models whose inputs are ``rows: current``).
    """
    built: dict[str, pa.Table] = {}
    for model in affected(models, new_rows):
        frames: dict[str, pl.LazyFrame] = {}
        for item in model.inputs:
            if item.rows == "model":
                upstream = built.get(item.name)
                schema = targets.schemas[item.name]
                frames[item.name] = (
                    pl.from_arrow(upstream).lazy() if upstream is not None else empty_frame(schema)
                )
            elif item.rows == "current":
                frames[item.name] = input_frame(item, current(item.name))
            else:
                frames[item.name] = input_frame(item, new_rows[item.name])
        built[model.name] = to_table(build(model, frames, targets), targets.schemas[model.name])
    return built
