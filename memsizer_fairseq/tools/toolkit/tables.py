"""Markdown tables of pandas frames, shared by the comparison's and the benchmark's reports."""
from typing import Callable, Dict, Iterable, List, Sequence, Tuple, Union

import pandas as pd

Format = Union[str, Callable[[object], str]]  # a format spec, or a function of the value


def cell(value, form: Format = "") -> str:
    """``value`` as ``form`` says (text as it is); a missing value (None, NaN) as ``-``."""
    if isinstance(value, str):
        return value
    if value is None or pd.isna(value):
        return "-"
    return form(value) if callable(form) else format(value, form)


def row_line(cells) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def table(headers: Sequence[str], rows: Iterable[Sequence]) -> List[str]:
    """A markdown table of rows of cells (shown as they are)."""
    return [row_line(headers), "|" + "---|" * len(headers), *map(row_line, rows)]


def markdown(frame: pd.DataFrame, columns: Dict[str, Union[Format, Tuple[str, Format]]]
             ) -> List[str]:
    """A markdown table of ``frame``'s ``columns``: column -> (header, format), or column ->
    format with the column's name as its header."""
    columns = {column: spec if isinstance(spec, tuple) else (column, spec)
               for column, spec in columns.items()}
    rows = [[cell(row.get(column), form) for column, (_, form) in columns.items()]
            for row in frame.to_dict("records")]
    return table([header for header, _ in columns.values()], rows)


def columns_table(columns: Sequence[Tuple[str, Sequence]], form: Callable[[str], Format]
                  ) -> List[str]:
    """A markdown table of ``(header, values)`` columns (of one length); ``form(header)`` is the
    format of the column's cells."""
    forms = [form(header) for header, _ in columns]
    rows = zip(*(list(values) for _, values in columns))
    return table([header for header, _ in columns], (map(cell, row, forms) for row in rows))
