"""pytest glue: the entry point, the one plugin object, hookspecs, fixtures, which tests are ours and their order."""
