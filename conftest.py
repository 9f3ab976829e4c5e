# Tests of the plugin drive pytest in a subprocess-free sandbox with pytester.
pytest_plugins = ["pytester"]
