"""Running a plan: the runner, cache keys, processes, progress and threads."""
