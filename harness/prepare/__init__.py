"""The prepare child's room: everything ``python -m harness.prepare`` does in its own process, under its memory cap
and time limit — build (or load) a generator and its checkpoint, compute its seeded inputs and fp32 reference,
compress it through the content-addressed artifact cache (``compress_steps``), export and validate each format.
``child`` is the request handler; the rest are the steps it drives."""
