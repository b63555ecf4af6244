"""Configuration, host side: suites, target profiles, the user's project file, where things are — strict TOML with
one-line errors."""
