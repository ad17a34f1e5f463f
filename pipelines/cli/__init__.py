"""The `contrastive` command line, by concern: `app` (the parser of every subcommand and the
error boundary), `steps` (ingest, pretrain, train, evaluate, profiles: one library call each),
`run` (the whole DAG locally), `cloud` (compile, submit, schedule); a target adds its own
(`pipelines.targets`)."""

from pipelines.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
