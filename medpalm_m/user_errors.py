"""One line for every user error: what each entry point does with a mistake in its command line,
its config or its inputs, instead of a traceback.

    with user_errors.as_lines():   # around absl's runner (flags_parser=user_errors.parse_flags)
      ...                          # or an argparse command

Exit codes: 2 (USAGE) for a command line, config or input the program cannot run with, found
before anything was created; 1 (FAILED) for a run that started and could not go on (divergence,
a checkpoint that cannot be written: the entry point names those exception types). Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Iterator, Sequence

from absl import app, flags
from ml_collections import config_flags

from medpalm_m import repository

USAGE = 2
FAILED = 1

# What a user's mistake raises: a value or name that is not valid, a file that is not there or
# cannot be written, a command line that is incomplete.
USER_ERRORS: tuple[type[BaseException], ...] = (
    app.UsageError, flags.Error, ValueError, LookupError, FileNotFoundError, NotADirectoryError,
    IsADirectoryError, FileExistsError, PermissionError)


def fail(message: str, code: int = USAGE) -> None:
  """Print `error: message` on stderr and exit with `code`."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def message_of(error: BaseException) -> str:
  """The text a user should read: a KeyError's message without the quotes its str() adds."""
  if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
    return error.args[0]
  return str(error)


@contextlib.contextmanager
def as_lines(failures: Sequence[type[BaseException]] = ()) -> Iterator[None]:
  """Known errors inside become one `error:` line and an exit code; others propagate."""
  try:
    yield
  except tuple(failures) as e:
    print(f"error: {message_of(e)}", file=sys.stderr, flush=True)
    # Leave now: interpreter teardown would wait on a failed save's background threads (or, in a
    # multi-process run, on a collective the other processes never reach) and print one traceback
    # per pending tensorstore callback. What the run wrote is closed already.
    sys.stdout.flush()
    os._exit(FAILED)
  except USER_ERRORS as e:
    fail(message_of(e), USAGE)
  except OSError as e:  # the disk or the system, not the user's request: the run failed
    fail(message_of(e), FAILED)


def parse_flags(argv: list[str]) -> list[str]:
  """Parse the flags and load every --config now, so that a config file that does not exist or a
  misspelt --config.key fails here, in one line, and not at the config's first use. A config's
  `from configs import ...` reads the repository's configs/ from any working directory."""
  repository.use_configs()
  try:
    remaining = flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e).replace("\n", " "))
  except (AttributeError, KeyError) as e:  # ml_collections: an override names no config key
    fail(_unknown_key(argv, message_of(e).strip("'\"")))
  for name in flags.FLAGS:
    value = flags.FLAGS[name].value
    if not _is_config_flag(name) or value is None:
      continue
    try:
      value.keys()  # a config file that failed to load raises its error on first use
    except OSError as e:
      path = config_flags.get_config_filename(flags.FLAGS[name])
      fail(f"--{name}={path}: cannot load the config file "
           f"({_last_line(str(e))}); give the path of a config .py file, e.g. configs/tiny.py")
  return remaining


def _is_config_flag(name: str) -> bool:
  """A --config-like flag (config_flags.DEFINE_config_file and friends)."""
  try:
    config_flags.get_config_filename(flags.FLAGS[name])
  except TypeError:  # not a config flag
    return False
  except flags.Error:  # a config flag without a value
    return True
  return True


def _unknown_key(argv: Sequence[str], message: str) -> str:
  """`--config.train.num_stepz: no key 'num_stepz' in config.train; did you mean 'num_steps'?`
  from ml_collections' message, `'num_stepz'` + `Did you mean "num_steps" instead of "num_stepz"?`."""
  named = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', message)
  key = named.group(2) if named else re.sub(r"\W", "", message.split("\\n")[0].split("\n")[0])
  override = next((a.split("=", 1)[0] for a in argv
                   if re.match(rf"--\w+\.([\w-]+\.)*{re.escape(key)}(=|$)", a)), None)
  where = override.lstrip("-").rsplit(".", 1)[0] if override else "the config"
  hint = f"; did you mean {named.group(1)!r}?" if named else ""
  return f"{override or key}: no key {key!r} in {where}{hint}"


def _last_line(text: str) -> str:
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return lines[-1] if lines else text
