"""The background daemon: its files, the inbox of submitted studies, the main loop, the client (docs/daemon.md)."""
