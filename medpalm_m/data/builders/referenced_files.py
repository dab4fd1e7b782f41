"""Files that a dataset's index (a CSV row) points at: all present, or all missing ones named at once.

A builder parses its index first, then checks every image file the rows name before decoding any,
so an incomplete download fails in seconds with the full list rather than hours into a build.
With `skip_malformed=True` a row whose file is missing is skipped and counted like any other
malformed record.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from medpalm_m.data.builders import base

_MISSING_SHOWN = 20


@dataclasses.dataclass(frozen=True)
class Reference:
  """A file named by one record of an index file."""
  path: str  # where the file should be
  index_path: str  # the index file (CSV) that names it
  line: int  # the index line of the record


def keep_present(builder: base.ManualBuilder, references: Sequence[Reference]) -> list[bool]:
  """Whether each referenced file exists; raises ManualDataError listing the missing ones.

  With `builder.skip_malformed`, a missing file instead makes its record malformed (counted and
  skipped) and comes back as False.
  """
  present = [os.path.isfile(r.path) for r in references]
  missing = [r for r, ok in zip(references, present) if not ok]
  if missing and not builder.skip_malformed:
    shown = "\n".join(f"  - {r.path} (named at {r.index_path}:{r.line})" for r in missing[:_MISSING_SHOWN])
    more = f"\n  ... and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
    raise base.ManualDataError(
        f"{builder.name}: {len(missing)} of {len(references)} files named in the index are missing "
        f"from {builder.manual_dir}:\n{shown}{more}\nThe download is incomplete: obtain the dataset "
        f"from {builder.HOMEPAGE} ({builder.OBTAIN}) and unpack it with the layout above, or build "
        f"from the records whose files are present ({base.SKIP_FLAGS}).")
  for reference in missing:
    builder.malformed(reference.index_path, reference.line, f"file {reference.path} is missing")
  return present
