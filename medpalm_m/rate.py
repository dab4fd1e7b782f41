"""The radiologist evaluation of generated reports: select cases, add raters, assign, serve, analyze.

    python -m medpalm_m.rate select --data_dir=DIR --source=NAME=WORKDIR [--source=...] --num_cases=N --out=study.sqlite
    python -m medpalm_m.rate add-rater --db=ratings.sqlite --name=NAME [--token] [--admin] [--reset]
    python -m medpalm_m.rate assign --study=study.sqlite --db=ratings.sqlite [--overlap=0.1] ...
    python -m medpalm_m.rate serve --study=study.sqlite --db=ratings.sqlite [--host=127.0.0.1] [--port=8000]
    python -m medpalm_m.rate progress --db=ratings.sqlite
    python -m medpalm_m.rate analyze --db=ratings.sqlite [--out=DIR]

add-rater reads the password from the terminal (or one line of standard input), or with --token
prints a one-time sign-in link instead. See medpalm_m/rating/ for what each step does.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sqlite3
import sys

from medpalm_m.rating import store as store_lib
from medpalm_m.rating import study as study_lib


class _Parser(argparse.ArgumentParser):
  """A usage mistake is one `error: ...` line and exit code 2, like every other mistake here."""

  def error(self, message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="python -m medpalm_m.rate", description=__doc__.split("\n")[0])
  commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

  select = commands.add_parser("select", help="pick the cases and write the study file")
  select.add_argument("--task", default="synthetic_mimic_cxr_report",
                      help="report task: mimic_cxr_report (real) or synthetic_mimic_cxr_report")
  select.add_argument("--data_dir", required=True, help="TFDS data_dir holding the task's split")
  select.add_argument("--split", default="test")
  select.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                      help="a rated model: its workdir (latest eval/predictions_step_N) or a .jsonl")
  select.add_argument("--step", type=int, default=None, help="predictions of this step (workdirs)")
  select.add_argument("--num_cases", type=int, default=246, help="cases to sample (paper: 246)")
  select.add_argument("--seed", type=int, default=0)
  select.add_argument("--out", required=True, help="the study file to write")

  add_rater = commands.add_parser("add-rater", help="add a rater (or an admin) to the ratings database")
  add_rater.add_argument("--db", required=True)
  add_rater.add_argument("--name", required=True)
  add_rater.add_argument("--token", action="store_true", help="a one-time sign-in link, no password")
  add_rater.add_argument("--admin", action="store_true", help="may see every rater's progress")
  add_rater.add_argument("--reset", action="store_true", help="new credentials for an existing rater")
  add_rater.add_argument("--url", default="http://127.0.0.1:8000", help="server address for the link")

  assign = commands.add_parser("assign", help="give raters their cases")
  assign.add_argument("--study", required=True)
  assign.add_argument("--db", required=True)
  assign.add_argument("--ranking_raters_per_case", type=int, default=1, help="paper: 1")
  assign.add_argument("--annotation_raters_per_case", default="all", help="a number, or all (paper)")
  assign.add_argument("--overlap", type=float, default=0.0,
                      help="share of cases every rater ranks (inter-rater agreement)")
  assign.add_argument("--seed", type=int, default=0)

  serve = commands.add_parser("serve", help="run the rating web app")
  serve.add_argument("--study", required=True)
  serve.add_argument("--db", required=True)
  serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to let other machines in")
  serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
  serve.add_argument("--threads", type=int, default=4)

  progress = commands.add_parser("progress", help="cases done per rater")
  progress.add_argument("--db", required=True)

  analyze = commands.add_parser("analyze", help="the paper's tables, JSON and chart from the ratings")
  analyze.add_argument("--db", required=True)
  analyze.add_argument("--out", default=None, help="folder for analysis.json/.png; default: the db's")
  analyze.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
  analyze.add_argument("--seed", type=int, default=0)
  return parser


def _password(name: str) -> str:
  if sys.stdin.isatty():
    first = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != first:
      raise ValueError("the two passwords differ")
    return first
  return sys.stdin.readline().rstrip("\n")


def run(args: argparse.Namespace) -> None:
  if args.command == "select":
    from medpalm_m.rating import selection
    print(json.dumps(selection.build_study(
        args.out, task=args.task, data_dir=args.data_dir, sources=selection.parse_sources(args.source),
        num_cases=args.num_cases, seed=args.seed, split=args.split, step=args.step), indent=2))
  elif args.command == "add-rater":
    password = None if args.token else _password(args.name)
    token = store_lib.add_rater(args.db, args.name, password=password, token=args.token, admin=args.admin,
                                reset=args.reset)
    print(f"added {'admin' if args.admin else 'rater'} {args.name!r} to {args.db}")
    if token:
      print(f"one-time sign-in link: {args.url.rstrip('/')}/login/token/{token}")
  elif args.command == "assign":
    from medpalm_m.rating import assignment
    per_case = args.annotation_raters_per_case
    if per_case != "all" and not per_case.isdigit():
      raise ValueError(f"--annotation_raters_per_case={per_case}: a number or 'all'")
    plan = assignment.Plan(ranking_raters_per_case=args.ranking_raters_per_case,
                           annotation_raters_per_case=None if per_case == "all" else int(per_case),
                           overlap=args.overlap, seed=args.seed)
    print(json.dumps(assignment.assign(args.study, args.db, plan), indent=2))
  elif args.command == "serve":
    from medpalm_m.rating import app
    app.serve(args.study, args.db, host=args.host, port=args.port, threads=args.threads,
              announce=lambda line: print(line, flush=True))
  elif args.command == "progress":
    for row in store_lib.progress(args.db):
      print(f"{row['rater']}: {row['done']} of {row['assigned']} done "
            f"({row['ranking']} with ranking, {row['annotation']} with annotation)")
  elif args.command == "analyze":
    from medpalm_m.rating import analysis
    report, paths = analysis.run(args.db, args.out, resamples=args.bootstrap, seed=args.seed)
    print(analysis.format_tables(report))
    print(f"wrote {paths['json']} and {paths['png']}")


def main(argv: list[str] | None = None) -> None:
  args = _parser().parse_args(argv)
  try:
    run(args)
  except (FileNotFoundError, FileExistsError, ValueError, KeyError, OSError, sqlite3.DatabaseError,
          study_lib.StudyError, store_lib.StoreError) as e:
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
