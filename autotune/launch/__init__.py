"""Trial processes: a trial of any kind (training, the user's script, serving) run in a forkserver
child, watched and answered over a pipe (docs/architecture.md).

Above `autotune.run`, `autotune.inference` and `autotune.sessions`, which it launches; none of
them imports it.
"""
