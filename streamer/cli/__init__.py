"""The `streamer` command: one module per subcommand (`main` is the entry point)."""
