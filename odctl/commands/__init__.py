"""odctl's command groups: each module's ``register(sub, common)`` adds its subcommands to
the parser and declares how each runs (odctl/dispatch.py). odctl/cli.py lists the groups."""
