"""The shipped zoo, target profiles and suites, as installed from a wheel (``models/``, ``targets/`` and
``suites/`` of the checkout are mapped here by pyproject.toml). Found through ``harness.config.paths.builtin_dir``."""
