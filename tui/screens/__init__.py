"""The terminal UI's screens: the studies list, one study, one trial."""
