"""``python -m aml_core.runtime serve ...``: the supervisor (it forks the workers)."""

from __future__ import annotations

import argparse
import os
import sys

from aml_core.errors import InvalidConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aml_core.runtime",
        description="Serve a score.py (init()/run()) over HTTP, compatible with Azure ML's "
        "inference server.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the supervisor and its workers")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=5001, help="port; 0 picks a free one (default 5001)"
    )
    serve.add_argument(
        "--workers",
        "--worker_count",
        dest="workers",
        type=int,
        default=None,
        help="worker processes (default: WORKER_COUNT or 1)",
    )
    serve.add_argument(
        "--spec", help="JSON spec file (entry_script, source_dir, model_dir, env ...)"
    )
    serve.add_argument("--state", help="state file rewritten atomically on every change")
    serve.add_argument("--entry_script", "--entry-script", dest="entry_script", help="score.py")
    serve.add_argument("--model_dir", "--model-dir", dest="model_dir", help="AZUREML_MODEL_DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from aml_core.runtime import config, supervisor

    if args.spec and (args.entry_script or args.model_dir):
        print("error: give either --spec or --entry_script/--model_dir, not both", file=sys.stderr)
        return supervisor.EXIT_USAGE
    workers = args.workers
    if workers is None:
        try:
            workers = int(os.environ.get("WORKER_COUNT") or 1)
        except ValueError:
            print("error: WORKER_COUNT must be an integer", file=sys.stderr)
            return supervisor.EXIT_USAGE
    if workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return supervisor.EXIT_USAGE
    spec_path = os.path.abspath(args.spec) if args.spec else None

    def load_config() -> dict:
        if spec_path:
            return config.from_spec_file(spec_path)
        return config.from_environment(args.entry_script, args.model_dir)

    try:
        load_config()  # fail fast on a bad spec, before binding
    except InvalidConfig as exc:
        print(f"error: {exc}", file=sys.stderr)
        return supervisor.EXIT_USAGE
    state = os.path.abspath(args.state) if args.state else None
    return supervisor.serve(args.host, args.port, workers, load_config, state)


if __name__ == "__main__":
    sys.exit(main())
