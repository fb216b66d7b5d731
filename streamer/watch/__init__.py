"""Watching a run: the on-screen window, the web viewer and the alert webhook."""
