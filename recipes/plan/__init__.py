"""Planning a run: the recipe format, its limits, overrides, plans and the checks before a run."""
