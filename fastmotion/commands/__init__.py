"""Subcommands of ``fastmotion``: one module per command, each with ``add_parser(subparsers)``.

Modules import torch and the rest of fastmotion inside their ``run`` functions, so that
``fastmotion --help`` stays fast.
"""
